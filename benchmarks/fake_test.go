package benchmarks

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"sync"

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
