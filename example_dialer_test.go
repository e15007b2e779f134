package connpool_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/connpool/connpool"
)

// ExamplePool_DialContext gives an http.Transport its conns from a pool:
// one cap for every request, and spare conns dialed ahead of demand. The
// Transport closes each conn when it is done with it, which frees its
// slot: the pool never reuses it. The Transport is sized within the
// pool's cap, and closes the conns it keeps idle: see docs/clients.md for
// each client's settings.
func ExamplePool_DialContext() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := fmt.Fprint(w, "hello from ", r.URL.Path); err != nil {
			log.Print(err)
		}
	}))
	defer srv.Close()

	pool, err := connpool.New("tcp", srv.Listener.Addr().String(),
		connpool.WithMaxConns(8), connpool.WithMinIdle(2))
	if err != nil {
		log.Fatal(err)
	}
	transport := &http.Transport{
		DialContext:         pool.DialContext,
		MaxConnsPerHost:     8, // never dials past the pool's cap
		MaxIdleConnsPerHost: 8, // keeps its conns between bursts
		IdleConnTimeout:     30 * time.Second,
	}
	client := &http.Client{Transport: transport}

	resp, err := client.Get(srv.URL + "/pooled")
	if err != nil {
		log.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(body))

	transport.CloseIdleConnections() // closes its keep-alive conn
	fmt.Println("released:", pool.Stats().ReleasedClosed)
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// hello from /pooled
	// released: 1
}

// ExampleErrClientPoolOverCap shows what a client whose own pool is
// larger than the pool's cap meets: the conns it keeps hold every slot, so
// its next dial waits, and when the wait runs out its error says so and
// names the client settings to change.
func ExampleErrClientPoolOverCap() {
	srv := startEcho(nil)
	defer srv.Close()
	// The pool warns once, through this logger (slog.Default without one).
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithMaxConns(2), connpool.WithLogger(logger))
	if err != nil {
		log.Fatal(err)
	}
	// A client keeps the two conns it dialed, as go-redis keeps its idle
	// conns, and dials a third.
	var kept []net.Conn
	for range 2 {
		conn, err := pool.DialContext(context.Background(), "tcp", srv.Addr())
		if err != nil {
			log.Fatal(err)
		}
		kept = append(kept, conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = pool.DialContext(ctx, "tcp", srv.Addr())
	fmt.Println(errors.Is(err, connpool.ErrClientPoolOverCap), errors.Is(err, context.DeadlineExceeded))

	// Until the client closes a conn, its next dial fails at once.
	_, err = pool.DialContext(context.Background(), "tcp", srv.Addr())
	fmt.Println(errors.Is(err, connpool.ErrClientPoolOverCap))

	for _, conn := range kept {
		if err := conn.Close(); err != nil {
			log.Fatal(err)
		}
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// true true
	// true
}

// ExampleWithDialer_tls pools TLS conns: the dialer does the handshake,
// within the pool's dial timeout. The checkout peek looks at the socket
// under the TLS: it drops a conn the server closed or reset, but cannot
// read the records waiting there, so a checker that speaks the protocol
// (PingPong) is what finds a hung server.
func ExampleWithDialer_tls() {
	serverConfig, clientConfig := selfSignedTLS("127.0.0.1")
	srv := startEcho(serverConfig) // a loopback TLS echo server standing in for your backend
	defer srv.Close()

	dialer := &tls.Dialer{Config: clientConfig}
	pool, err := connpool.New("tcp", srv.Addr(), connpool.WithDialer(dialer.DialContext))
	if err != nil {
		log.Fatal(err)
	}
	conn, err := pool.Get(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	tc, ok := conn.Unwrap().(*tls.Conn) // the dialer's own conn
	if !ok {
		log.Fatalf("dialed a %T", conn.Unwrap())
	}
	fmt.Println(tls.VersionName(tc.ConnectionState().Version))
	reply, err := exchange(conn, "over TLS")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(reply)
	if err := conn.Close(); err != nil {
		log.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// TLS 1.3
	// over TLS
}

// selfSignedTLS returns the configs of a server with a fresh self-signed
// certificate for ip, and of a client that trusts it.
func selfSignedTLS(ip string) (server, client *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	return server, &tls.Config{RootCAs: roots}
}
