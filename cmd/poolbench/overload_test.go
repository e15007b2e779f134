package main

import (
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOverloadServersServeTheSameWork: in the overload comparison the
// requests carry no service time, and every server draws the same
// sequence in a phase, whichever requests its pool serves and over
// whichever conns: at 200% load the pools' orders serve different halves
// of the arrivals, and service times carried by the requests made a
// policy's goodput against FIFO's the ratio of those halves' mean service
// times, a draw of the seed (LIFO 2.3% below FIFO at the same
// utilisation).
func TestOverloadServersServeTheSameWork(t *testing.T) {
	require.True(t, overloadConfig(newSizingConfig(4, time.Second)).serverDraws, "the overload comparison's servers draw the service times")
	require.False(t, newSizingConfig(4, time.Second).serverDraws, "the sizing scenario's requests carry theirs")

	// Two servers of one phase, one served over one conn, the other over
	// three: the same sequence of service times; another phase's differs.
	drawn := func(phase uint64, conns int) []time.Duration {
		srv, err := startSizingServer(1, 10*time.Microsecond, 0.5, 1)
		require.NoError(t, err)
		defer srv.close()
		srv.recordSpans()
		srv.reseed(phase)
		var cs []net.Conn
		for range conns {
			c, err := net.Dial("tcp", srv.addr())
			require.NoError(t, err)
			defer c.Close()
			cs = append(cs, c)
		}
		for i := range 12 {
			c := cs[i%conns]
			buf := make([]byte, reqSize) // 0: the server draws
			_, err := c.Write(buf)
			require.NoError(t, err)
			_, err = io.ReadFull(c, buf)
			require.NoError(t, err)
		}
		var out []time.Duration
		for _, sp := range srv.servedSpans() {
			out = append(out, sp.service)
		}
		return out
	}
	one := drawn(1, 1)
	require.Len(t, one, 12)
	assert.Equal(t, one, drawn(1, 3), "the same work in a phase, over however many conns")
	assert.NotEqual(t, one, drawn(2, 1), "each phase has its own sequence")
}

// TestSizingServerSpans: the server records, for every request it serves,
// its slot, its service time and its conn's turnaround; serverInPhase
// counts a request in the phase its slot ended in and clips the busy time
// to the phase.
func TestSizingServerSpans(t *testing.T) {
	srv, err := startSizingServer(2, time.Millisecond, 0.5, 1)
	require.NoError(t, err)
	defer srv.close()
	srv.recordSpans()
	c, err := net.Dial("tcp", srv.addr())
	require.NoError(t, err)
	defer c.Close()
	for range 3 {
		buf := make([]byte, reqSize)
		binary.LittleEndian.PutUint64(buf, uint64(2*time.Millisecond))
		_, err := c.Write(buf)
		require.NoError(t, err)
		_, err = io.ReadFull(c, buf)
		require.NoError(t, err)
	}
	spans := srv.servedSpans()
	require.Len(t, spans, 3)
	assert.True(t, spans[0].first, "the conn's first request")
	for i, sp := range spans {
		assert.Equal(t, 2*time.Millisecond, sp.service, "the carried time")
		assert.GreaterOrEqual(t, sp.end.Sub(sp.start), 2*time.Millisecond)
		if i > 0 {
			assert.False(t, sp.first)
			assert.Positive(t, sp.idle, "the turnaround since the reply before")
		}
	}

	at := spans[0].start
	ms := func(n int) time.Time { return at.Add(time.Duration(n) * time.Millisecond) }
	synthetic := []servedSpan{
		{read: ms(0), start: ms(0), end: ms(4), service: 4 * time.Millisecond, first: true},
		{read: ms(5), start: ms(5), end: ms(9), service: 4 * time.Millisecond, idle: time.Millisecond},
		{read: ms(8), start: ms(11), end: ms(15), service: 4 * time.Millisecond, idle: 3 * time.Millisecond},
	}
	got := serverInPhase(synthetic, ms(2), ms(12), 1)
	assert.Equal(t, int64(2), got.served, "the slots that ended in the phase")
	assert.Equal(t, 8*time.Millisecond, got.serviceSum)
	assert.Equal(t, int64(1), got.newConns)
	assert.Equal(t, int64(1), got.turnarounds)
	assert.Equal(t, time.Millisecond, got.turnaround)
	assert.Equal(t, int64(0), got.queued, "the one that waited for its slot ended after the phase")
	assert.InDelta(t, 0.7, got.utilisation, 1e-9, "2ms+4ms+1ms of the phase's 10ms")
	assert.Equal(t, int64(1), serverInPhase(synthetic, ms(12), ms(20), 1).queued, "waited 3ms for its slot")
}

// TestOverloadOrderServesNoCheaperWork backs overloadConfig's server
// draws with a model of the 200% phase without any pool overhead: C
// conns always busy, Poisson arrivals at twice their capacity, each with
// a lognormal service time of its own, Gets given up after 100ms, served
// oldest first or newest first. Neither order can see a service time, so
// over many seeds neither serves more; but in one seed the two serve
// different halves of the arrivals, whose mean service times differ by
// about 1% (one standard deviation): more than a ">= FIFO's" bar
// tolerates, so the comparison must not hang on which half.
func TestOverloadOrderServesNoCheaperWork(t *testing.T) {
	const (
		c       = 8
		mean    = 20 * time.Millisecond
		getWait = 100 * time.Millisecond
		window  = 5 * time.Second
		seeds   = 300
	)
	// served returns the requests served whose service ended in
	// [0, window), after a second of the same load.
	served := func(arrivals, services []time.Duration, lifo bool) int {
		free := make([]time.Duration, c) // when each conn is free next
		for i := range free {
			free[i] = -time.Second
		}
		var queue []int // waiting requests, oldest first
		next, n := 0, 0
		for {
			k := 0 // the conn free first
			for i := range free {
				if free[i] < free[k] {
					k = i
				}
			}
			now := free[k]
			if now >= window {
				return n
			}
			for next < len(arrivals) && arrivals[next] <= now {
				queue = append(queue, next)
				next++
			}
			for len(queue) > 0 && now-arrivals[queue[0]] >= getWait {
				queue = queue[1:] // given up (or shed)
			}
			if len(queue) == 0 {
				free[k] = arrivals[next]
				continue
			}
			r := queue[0]
			if lifo {
				r = queue[len(queue)-1]
				queue = queue[:len(queue)-1]
			} else {
				queue = queue[1:]
			}
			free[k] = now + services[r]
			if free[k] >= 0 && free[k] < window {
				n++
			}
		}
	}
	var sum, sumSq float64
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed*0x9e3779b97f4a7c15, 1))
		var arrivals, services []time.Duration
		for at := -time.Second; at < window+time.Second; at += time.Duration(rng.ExpFloat64() / (2 * c) * float64(mean)) {
			arrivals = append(arrivals, at)
			services = append(services, lognormal(rng, mean, 0.5))
		}
		r := float64(served(arrivals, services, true))/float64(served(arrivals, services, false)) - 1
		sum += r
		sumSq += r * r
	}
	avg := sum / seeds
	sd := math.Sqrt(sumSq/seeds - avg*avg)
	t.Logf("newest first over oldest first: %+.2f%% on average, standard deviation %.2f%%", 100*avg, 100*sd)
	assert.InDelta(t, 0, avg, 3*sd/math.Sqrt(seeds), "neither order serves more on average")
	assert.Greater(t, sd, 0.005, "one seed's draw moves the ratio by more than the bar tolerates")
}
