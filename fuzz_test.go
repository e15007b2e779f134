package connpool_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connpool/connpool"
)

// FuzzOptions feeds New arbitrary option values. It must never panic:
// either it returns a pool whose settings are coherent, or an error that
// wraps ErrInvalidOption and names an option.
func FuzzOptions(f *testing.F) {
	f.Add(4, 0, 4, 2, int64(time.Minute), int64(time.Hour), int64(time.Minute), int64(time.Second), int64(time.Second), int64(time.Second), int64(time.Millisecond), int64(time.Second), uint16(0xffff))
	f.Add(0, 5, 4, 0, int64(-1), int64(-1), int64(2), int64(-1), int64(-1), int64(0), int64(0), int64(-1), uint16(0xffff))
	f.Add(3, 3, 3, 1, int64(0), int64(0), int64(0), int64(0), int64(0), int64(1), int64(1), int64(1), uint16(0x0f0f))
	f.Fuzz(func(t *testing.T, maxConns, minIdle, maxIdle, maxConnecting int,
		idle, life, jitter, dialTimeout, interval, checkTimeout, backoffMin, backoffMax int64, which uint16) {
		var opts []connpool.Option
		add := func(bit uint, o connpool.Option) {
			if which&(1<<bit) != 0 {
				opts = append(opts, o)
			}
		}
		add(0, connpool.WithMaxConns(maxConns))
		add(1, connpool.WithMinIdle(minIdle))
		add(2, connpool.WithMaxIdle(maxIdle))
		add(3, connpool.WithMaxConnecting(maxConnecting))
		add(4, connpool.WithIdleTimeout(time.Duration(idle)))
		add(5, connpool.WithMaxLifetime(time.Duration(life)))
		add(6, connpool.WithMaxLifetimeJitter(time.Duration(jitter)))
		add(7, connpool.WithDialTimeout(time.Duration(dialTimeout)))
		add(8, connpool.WithHealthCheckInterval(time.Duration(interval)))
		add(9, connpool.WithHealthCheckTimeout(time.Duration(checkTimeout)))
		add(10, connpool.WithDialBackoff(time.Duration(backoffMin), time.Duration(backoffMax)))
		add(11, connpool.WithLivenessCheck(which&(1<<12) != 0))
		// Never dial anything real: a dialer that fails at once.
		opts = append(opts, connpool.WithDialer(func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("fuzz: no dialing")
		}))
		p, err := connpool.New("tcp", "127.0.0.1:1", opts...)
		if err != nil {
			if p != nil {
				t.Fatal("New returned a pool with an error")
			}
			if !errors.Is(err, connpool.ErrInvalidOption) || !strings.Contains(err.Error(), "With") {
				t.Fatalf("error does not name an option: %v", err)
			}
			return
		}
		st := p.Stats()
		if st.MaxConns < 1 || (which&1 != 0 && st.MaxConns != maxConns) {
			t.Fatalf("MaxConns %d from WithMaxConns(%d)", st.MaxConns, maxConns)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// scriptConn is an in-memory conn whose next Read or Write fails on cue.
type scriptConn struct {
	fail   atomic.Bool
	closed atomic.Bool
}

var errScripted = errors.New("scripted I/O failure")

func (c *scriptConn) Read(b []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	if c.fail.Load() {
		return 0, errScripted
	}
	return len(b), nil
}

func (c *scriptConn) Write(b []byte) (int, error) { return c.Read(b) }
func (c *scriptConn) Close() error                { c.closed.Store(true); return nil }
func (c *scriptConn) LocalAddr() net.Addr         { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr        { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error {
	return nil
}
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzConnStateMachine drives a Conn and its pool with arbitrary sequences
// of operations from the current holder and from stale holders (conns
// already returned), and checks the wrapper's promises after each step:
// a stale holder never reaches a socket, a second return is refused, a
// conn whose I/O failed or that was marked unusable is never handed out
// again, no conn dialed before a Reset is handed out after it, a detached
// conn is never touched again, the custody ledger balances after every
// step, and the books balance at the end.
func FuzzConnStateMachine(f *testing.F) {
	f.Add([]byte{0, 3, 4, 1, 0, 7, 8, 9, 10, 11, 2, 0, 5, 3, 1, 0, 6, 1, 12, 13})
	f.Add([]byte{0, 0, 0, 5, 4, 1, 1, 1, 7, 7, 12})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var dialed []*scriptConn
		p, err := connpool.New("tcp", "fuzz:0", connpool.WithMaxConns(2), connpool.WithLivenessCheck(false),
			connpool.WithHealthCheckInterval(0), connpool.WithDialer(func(context.Context, string, string) (net.Conn, error) {
				c := &scriptConn{}
				dialed = append(dialed, c)
				return c, nil
			}))
		if err != nil {
			t.Fatal(err)
		}
		var held []*connpool.Conn // borrowed now
		var stale []*connpool.Conn
		broken := map[net.Conn]bool{}   // inner conns whose holder saw an I/O failure or marked them
		preReset := map[net.Conn]bool{} // inner conns dialed before the last Reset
		detached := map[net.Conn]bool{}
		gets := int64(0)
		buf := make([]byte, 4)
		pick := func(list []*connpool.Conn, i int) (*connpool.Conn, int) {
			if len(list) == 0 {
				return nil, -1
			}
			k := i % len(list)
			return list[k], k
		}
		for i, op := range ops {
			switch op % 16 {
			case 0, 1: // Get (TryGet for 1)
				var c *connpool.Conn
				if op%16 == 0 && len(held) < 2 {
					c, err = p.Get(context.Background())
				} else {
					c, err = p.TryGet()
				}
				if err != nil {
					continue
				}
				gets++
				if broken[c.Unwrap()] {
					t.Fatalf("step %d: a broken conn was handed out again", i)
				}
				if preReset[c.Unwrap()] {
					t.Fatalf("step %d: a conn dialed before Reset was handed out", i)
				}
				held = append(held, c)
			case 2, 3: // Put or Close by the holder
				if c, k := pick(held, i); c != nil {
					var err error
					if op%16 == 2 {
						err = p.Put(c)
					} else {
						err = c.Close()
					}
					if err != nil {
						t.Fatalf("step %d: return: %v", i, err)
					}
					held = append(held[:k], held[k+1:]...)
					stale = append(stale, c)
				}
			case 4, 5: // Read or Write by the holder
				if c, _ := pick(held, i); c != nil {
					inner := c.Unwrap()
					var err error
					if op%16 == 4 {
						_, err = c.Read(buf)
					} else {
						_, err = c.Write(buf)
					}
					if err != nil {
						broken[inner] = true
					}
				}
			case 6: // the next I/O on a held conn fails
				if c, _ := pick(held, i); c != nil {
					c.Unwrap().(*scriptConn).fail.Store(true)
				}
			case 7: // MarkUnusable
				if c, _ := pick(held, i); c != nil {
					broken[c.Unwrap()] = true
					c.MarkUnusable()
				}
			case 8: // deadlines
				if c, _ := pick(held, i); c != nil {
					if err := c.SetDeadline(time.Now().Add(time.Hour)); err != nil {
						t.Fatal(err)
					}
				}
			case 9, 10, 11: // a stale holder tries to use its conn
				if c, _ := pick(stale, i); c != nil {
					if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
						t.Fatalf("step %d: stale Read: %v", i, err)
					}
					if _, err := c.Write(buf); !errors.Is(err, net.ErrClosed) {
						t.Fatalf("step %d: stale Write: %v", i, err)
					}
					if err := c.SetReadDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
						t.Fatalf("step %d: stale SetReadDeadline: %v", i, err)
					}
					if c.Unwrap() != nil {
						t.Fatalf("step %d: stale Unwrap reached the inner conn", i)
					}
				}
			case 12: // a stale holder returns it again
				if c, _ := pick(stale, i); c != nil {
					if err := c.Close(); !errors.Is(err, connpool.ErrConnReturned) {
						t.Fatalf("step %d: second Close: %v", i, err)
					}
					if err := p.Put(c); !errors.Is(err, connpool.ErrConnReturned) {
						t.Fatalf("step %d: second Put: %v", i, err)
					}
				}
			case 13: // the holder fixes its conn's I/O (the failure already poisoned it)
				if c, _ := pick(held, i); c != nil {
					c.Unwrap().(*scriptConn).fail.Store(false)
				}
			case 14: // Reset
				if err := p.Reset(); err != nil {
					t.Fatalf("step %d: Reset: %v", i, err)
				}
				for _, c := range dialed {
					preReset[c] = true
				}
			case 15: // the holder detaches its conn
				if c, k := pick(held, i); c != nil {
					nc, err := c.Detach()
					if err != nil {
						t.Fatalf("step %d: Detach: %v", i, err)
					}
					detached[nc] = true
					held = append(held[:k], held[k+1:]...)
					stale = append(stale, c)
				}
			}
			if err := p.CheckInvariants(); err != nil {
				t.Fatalf("step %d (op %d): %v", i, op%16, err)
			}
		}
		for _, c := range held {
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		st := p.Stats()
		if st.InUse != 0 || st.OpenConns != 0 {
			t.Fatalf("after Close: %+v", st)
		}
		if st.Hits+st.Misses != gets {
			t.Fatalf("hits %d + misses %d != gets %d", st.Hits, st.Misses, gets)
		}
		if st.Dials != int64(len(dialed)) || st.Dials != closedTotal(st) {
			t.Fatalf("dials %d, dialed %d, closed %d", st.Dials, len(dialed), closedTotal(st))
		}
		for _, c := range dialed {
			if c.closed.Load() == detached[c] {
				t.Fatalf("a dialed conn was left open, or a detached one closed by the pool (detached %v)", detached[c])
			}
		}
		if err := p.CheckInvariants(); err != nil {
			t.Fatal(err)
		}
	})
}
