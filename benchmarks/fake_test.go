package benchmarks

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/connpool/connpool/internal/clock"
	"github.com/connpool/connpool/internal/fakeconn"
)

// fakeDriver is the least database/sql driver that lets its pool be
// measured: connections that do nothing.
type fakeDriver struct{}

type fakeDriverConn struct{}

func (fakeDriver) Open(string) (driver.Conn, error)        { return fakeDriverConn{}, nil }
func (fakeDriverConn) Prepare(string) (driver.Stmt, error) { return nil, errors.New("unsupported") }
func (fakeDriverConn) Close() error                        { return nil }
func (fakeDriverConn) Begin() (driver.Tx, error)           { return nil, errors.New("unsupported") }
func (fakeDriverConn) ResetSession(context.Context) error  { return nil }
func (fakeDriverConn) IsValid() bool                       { return true }

var registerOnce sync.Once

func openFakeDB(size int) *sql.DB {
	registerOnce.Do(func() { sql.Register("connpool-fake", fakeDriver{}) })
	db, err := sql.Open("connpool-fake", "")
	if err != nil {
		panic(err)
	}
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	return db
}

// chanPool is a floor: a buffered channel of conns.
type chanPool chan net.Conn

func newChanPool(size int) chanPool {
	ch := make(chanPool, size)
	for range size {
		ch <- &fakeconn.Conn{}
	}
	return ch
}

func (ch chanPool) get() net.Conn  { return <-ch }
func (ch chanPool) put(c net.Conn) { ch <- c }

// stackPool is a floor: a mutex-guarded slice used as a stack. It cannot
// wait, so it has no starved variant.
type stackPool struct {
	mu    sync.Mutex
	conns []net.Conn
}

func newStackPool(size int) *stackPool {
	s := &stackPool{}
	for range size {
		s.conns = append(s.conns, &fakeconn.Conn{})
	}
	return s
}

func (s *stackPool) get() net.Conn {
	s.mu.Lock()
	c := s.conns[len(s.conns)-1]
	s.conns = s.conns[:len(s.conns)-1]
	s.mu.Unlock()
	return c
}

func (s *stackPool) put(c net.Conn) {
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
}

// fifoPool is a floor for a pool that keeps what the channel cannot: an
// idle stack (the most recently returned conn first, so that the others
// age out), and a first-come, first-served queue of waiters that any Get
// can join with what it needs, under one mutex, with direct hand-off to a
// waiter's own channel, recycled through a sync.Pool. With timed, each wait also takes the
// two clock reads that time it, as WaitDuration does. It keeps no counts,
// no ledger, no checks and no contexts: what is left is the cost of the
// queue itself.
type fifoPool struct {
	timed bool

	mu      sync.Mutex
	idle    []net.Conn
	waiters []*fifoWaiter // oldest first
	waited  atomic.Int64  // nanoseconds, with timed: WaitDuration's sum, so the clock reads do work
}

var fifoWaiters = sync.Pool{New: func() any { return &fifoWaiter{ch: make(chan net.Conn, 1)} }}

type fifoWaiter struct{ ch chan net.Conn }

func newFIFOPool(size int, timed bool) *fifoPool {
	p := &fifoPool{timed: timed}
	for range size {
		p.idle = append(p.idle, &fakeconn.Conn{})
	}
	return p
}

func (p *fifoPool) get() net.Conn {
	var start int64
	if p.timed {
		start = clock.Ticks()
	}
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c
	}
	w := fifoWaiters.Get().(*fifoWaiter)
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	c := <-w.ch
	if p.timed {
		p.waited.Add(clock.Since(start).Nanoseconds())
	}
	fifoWaiters.Put(w)
	return c
}

func (p *fifoPool) put(c net.Conn) {
	p.mu.Lock()
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		w.ch <- c
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}
