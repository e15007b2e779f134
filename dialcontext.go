package connpool

import (
	"context"
	"fmt"
	"net"
)

// DialContext hands out a conn for a client that manages its own
// connections (net/http, gRPC, database/sql drivers): pass it as
// [net/http.Transport.DialContext], or use [Pool.DialAddr].
//
// Such clients close a conn when their protocol session is over (an HTTP/2
// GOAWAY, a PostgreSQL Terminate, a MySQL COM_QUIT, an HTTP body left
// unread), and a conn in that state must not be reused. So a conn from
// DialContext is destroyed when the client closes it, and its slot freed:
// it is never put back. What the pool gives these clients is warm,
// health-checked spare conns (see [WithMinIdle]: no TCP or TLS handshake on
// the request path), one cap shared by every client of the pool, and
// [Pool.Stats].
//
// DialContext only hands out conns no one has used: an idle conn that was
// never borrowed, or a fresh dial. network and address must be the pool's
// (for a pool of a host name, the name, not one of its addresses); for
// any other, DialContext returns [ErrWrongAddress] and never a conn to
// the wrong host. Otherwise it behaves as [Pool.Get], ctx included.
//
// For HTTPS, give DialContext to the Transport and let the Transport do
// TLS: a conn wrapped by DialTLSContext would lose HTTP/2, which needs a
// *tls.Conn.
//
// On a pool with [WithAdaptiveMaxConns], DialContext returns
// [ErrAdaptiveDialContext]: its conns are never returned, so the adaptive
// cap could not measure them.
func (p *Pool) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != p.network || address != p.address {
		return nil, p.refuse(fmt.Errorf("%w: pool dials %s %s, not %s %s",
			ErrWrongAddress, p.network, p.address, network, address))
	}
	if p.adaptive != nil {
		return nil, p.refuse(ErrAdaptiveDialContext)
	}
	c, err := p.get(ctx, connDestroyOnClose)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// refuse counts, and reports to the Get hooks, a DialContext that fails
// with err before it is a Get, and returns err.
func (p *Pool) refuse(err error) error {
	id, start := p.getStarted()
	p.getFailed(err)
	if p.hooks.GetDone != nil {
		p.emitGetDone(&getOp{}, nil, err, id, start)
	}
	return err
}

// DialAddr is [Pool.DialContext] on the pool's network, in the form
// grpc.WithContextDialer and go-sql-driver/mysql's RegisterDialContext
// take: pass p.DialAddr.
func (p *Pool) DialAddr(ctx context.Context, address string) (net.Conn, error) {
	return p.DialContext(ctx, p.network, address)
}
