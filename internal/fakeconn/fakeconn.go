// Package fakeconn is an in-memory net.Conn with no socket, for measuring
// the pool alone: reads return nothing, writes succeed, Close counts.
package fakeconn

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// Conn is a net.Conn that does no I/O. It is safe for concurrent use.
type Conn struct {
	closed atomic.Bool
}

// Dial returns a new Conn; its signature is that of a pool's dialer.
func Dial(context.Context, string, string) (net.Conn, error) { return &Conn{}, nil }

func (*Conn) Read([]byte) (int, error)         { return 0, nil }
func (*Conn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *Conn) Close() error                   { c.closed.Store(true); return nil }
func (*Conn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (*Conn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (*Conn) SetDeadline(time.Time) error      { return nil }
func (*Conn) SetReadDeadline(time.Time) error  { return nil }
func (*Conn) SetWriteDeadline(time.Time) error { return nil }

// Closed reports whether Close was called.
func (c *Conn) Closed() bool { return c.closed.Load() }

var _ net.Conn = (*Conn)(nil)
