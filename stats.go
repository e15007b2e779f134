package connpool

import "time"

// Stats is a snapshot of a pool's state and counters, from [Pool.Stats].
// Gauges are values now; counters only grow from the pool's creation.
// Every conn ever dialled is open or closed for exactly one reason:
//
//	Dials = OpenConns + IdleClosed + LifetimeClosed + HealthFailures +
//	        BrokenClosed + MaxIdleClosed + ReleasedClosed + PoolClosed
type Stats struct {
	MaxConns  int // the cap on open conns (WithMaxConns)
	OpenConns int // conns open now: in use, idle, under check, or closing
	InUse     int // conns borrowed now
	Idle      int // idle conns now, including those under a background check
	Dialing   int // dials in flight now
	Waiting   int // Gets queued for a conn now

	Dials      int64 // conns dialled successfully
	DialErrors int64 // dials that failed

	Hits         int64         // successful Gets served an existing conn, idle or handed off
	Misses       int64         // successful Gets served a freshly dialled conn
	WaitCount    int64         // Gets that queued because the cap or the dial limit was reached
	WaitDuration time.Duration // total time those Gets spent queued
	Timeouts     int64         // Gets whose context ended before a conn was ready

	IdleClosed     int64 // conns closed after sitting idle for IdleTimeout, or used ones retired to make room for a DialContext caller's dial
	LifetimeClosed int64 // conns closed for reaching their max lifetime
	HealthFailures int64 // conns closed by the checkout peek or a background check
	BrokenClosed   int64 // conns closed on return after a failed Read or Write, or MarkUnusable
	MaxIdleClosed  int64 // conns closed on return because MaxIdle conns were idle
	ReleasedClosed int64 // conns from DialContext closed by their client
	PoolClosed     int64 // conns closed by Close or Shutdown
}

// Stats returns a snapshot of the pool's gauges and counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idleMu.Lock()
	defer p.idleMu.Unlock()
	return Stats{
		MaxConns:  p.cfg.maxConns,
		OpenConns: p.numOpen - p.numDialing,
		InUse:     p.inUseLocked(),
		Idle:      p.idle.Len() + p.numChecking,
		Dialing:   p.numDialing,
		Waiting:   p.waiters.Len(),

		Dials:      p.dials,
		DialErrors: p.dialErrors,

		Hits:         p.idlePops - p.idleRejects + p.handoffHits.Load(),
		Misses:       p.misses.Load(),
		WaitCount:    p.waitCount,
		WaitDuration: time.Duration(p.waitNanos.Load()),
		Timeouts:     p.timeouts,

		IdleClosed:     p.closes[closeIdle],
		LifetimeClosed: p.closes[closeLifetime],
		HealthFailures: p.closes[closeUnhealthy],
		BrokenClosed:   p.closes[closeBroken],
		MaxIdleClosed:  p.closes[closeMaxIdle],
		ReleasedClosed: p.closes[closeReleased],
		PoolClosed:     p.closes[closePool],
	}
}
