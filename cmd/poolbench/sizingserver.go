package main

import (
	"encoding/binary"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// sizingServer is the sizing scenario's backend: it serves at most limit
// requests at once, each for a lognormal service time, and queues the
// others first come, first served, as a database with limit cores does.
// A request is reqSize bytes, its reply the same bytes: a service time in
// nanoseconds, little endian, or 0 for one the server draws itself. The
// sizing scenario's clients send the one drawn for each arrival, so that
// every configuration serves the same work for the same request, whatever
// order its requests reach the server in and whichever it lost to
// timeouts; the calibration's clients send 0, and so do the overload
// comparison's, whose servers draw from one sequence per phase, the same
// for every server (reseed), so that each serves the same work in a
// phase, whichever requests its pool's order serves (see overload.go). A
// request whose client has given up is still served when its turn comes:
// the server cannot tell, as most cannot, and that wasted work is what
// too large a pool costs under overload.
type sizingServer struct {
	conns
	service time.Duration // the mean service time
	sigma   float64       // of the service time's logarithm

	mu       sync.Mutex // guards the fields below (conns has its own)
	limit    int
	busy     int             // requests being served
	queue    []chan struct{} // requests waiting for a slot, oldest first
	rng      *rand.Rand
	slotTime time.Duration // spent in slots, sleep overshoot included
	served   int64
	record   bool         // keep spans
	spans    []servedSpan // every request served since record was set
}

// servedSpan is one request the server served: when it was read, when it
// got a slot and left it, its service time, and how long its conn had
// been idle at the server since the reply before it (first: none before).
type servedSpan struct {
	read, start, end time.Time
	service          time.Duration
	idle             time.Duration
	first            bool
}

const reqSize = 8

func startSizingServer(limit int, service time.Duration, sigma float64, seed uint64) (*sizingServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sizingServer{service: service, sigma: sigma, limit: limit, rng: rand.New(rand.NewPCG(seed, 2))}
	s.listen(ln, s.serve)
	return s, nil
}

func (s *sizingServer) serve(c net.Conn) {
	buf := make([]byte, reqSize)
	var replied time.Time
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		read := time.Now()
		d := s.acquire(time.Duration(binary.LittleEndian.Uint64(buf)))
		t0 := time.Now()
		time.Sleep(d)
		t1 := time.Now()
		sp := servedSpan{read: read, start: t0, end: t1, service: d, first: replied.IsZero()}
		if !sp.first {
			sp.idle = read.Sub(replied)
		}
		s.release(t1.Sub(t0), sp)
		if _, err := c.Write(buf); err != nil {
			return
		}
		replied = time.Now()
	}
}

// acquire waits for a slot, first come first served, and returns the
// service time to spend in it: d, or one drawn if d is 0.
func (s *sizingServer) acquire(d time.Duration) time.Duration {
	s.mu.Lock()
	if d <= 0 {
		d = lognormal(s.rng, s.service, s.sigma)
	}
	if s.busy < s.limit {
		s.busy++
		s.mu.Unlock()
		return d
	}
	ch := make(chan struct{})
	s.queue = append(s.queue, ch)
	s.mu.Unlock()
	<-ch // the slot was handed over: busy counts it already
	return d
}

func (s *sizingServer) release(took time.Duration, sp servedSpan) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slotTime += took
	s.served++
	if s.record {
		s.spans = append(s.spans, sp)
	}
	if len(s.queue) > 0 && s.busy <= s.limit {
		close(s.queue[0])
		s.queue = s.queue[1:]
		return
	}
	s.busy--
}

// recordSpans makes the server keep a servedSpan of every request it
// serves from now on.
func (s *sizingServer) recordSpans() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record = true
}

// servedSpans returns the spans recorded.
func (s *sizingServer) servedSpans() []servedSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.spans)
}

// meanService returns the mean time a request held its slot.
func (s *sizingServer) meanService() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.served == 0 {
		return 0
	}
	return s.slotTime / time.Duration(s.served)
}

// lognormal draws a service time from the lognormal of this mean whose
// logarithm has deviation sigma.
func lognormal(rng *rand.Rand, mean time.Duration, sigma float64) time.Duration {
	mu := math.Log(float64(mean)) - sigma*sigma/2 // so that the mean is mean
	return time.Duration(math.Exp(mu + sigma*rng.NormFloat64()))
}

// reseed restarts the sequence the server draws service times from: the
// one of phase, the same for every server.
func (s *sizingServer) reseed(phase uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rng = rand.New(rand.NewPCG(100+phase, 2))
}

// setLimit changes how many requests are served at once.
func (s *sizingServer) setLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = n
	for s.busy < s.limit && len(s.queue) > 0 {
		s.busy++
		close(s.queue[0])
		s.queue = s.queue[1:]
	}
}
