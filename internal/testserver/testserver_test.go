package testserver

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/connpool/connpool/internal/testcert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s, err := Start(opts...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestEchoAndCounts(t *testing.T) {
	s := start(t)
	a, b := dial(t, s), dial(t, s)
	got, err := RoundTrip(a, "ping")
	require.NoError(t, err)
	assert.Equal(t, "ping", got)
	_, err = RoundTrip(b, "x")
	require.NoError(t, err)
	assert.Equal(t, 2, s.Open())
	assert.Equal(t, int64(2), s.Accepted())

	// A client that closes one conn and dials another is never counted
	// above two at the server, even before the handler reads the EOF.
	for range 50 {
		require.NoError(t, a.Close())
		a = dial(t, s)
		_, err = RoundTrip(a, "y")
		require.NoError(t, err)
	}
	assert.Equal(t, 2, s.MaxOpen())
}

func TestFaults(t *testing.T) {
	s := start(t)
	c := dial(t, s)
	_, err := RoundTrip(c, "a")
	require.NoError(t, err)

	require.NoError(t, s.Send([]byte("unasked")))
	buf := make([]byte, 7)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "unasked", string(buf))

	s.SetMode(Silent)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = RoundTrip(c, "b")
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	assert.True(t, ne.Timeout(), "a silent server never answers")
	require.NoError(t, c.SetReadDeadline(time.Time{}))
	s.SetMode(Echo)

	require.NoError(t, s.CloseConns())
	_, err = c.Read(buf)
	assert.ErrorIs(t, err, io.EOF)

	r := dial(t, s)
	_, err = RoundTrip(r, "c")
	require.NoError(t, err)
	require.NoError(t, s.ResetConns())
	_, err = r.Read(buf)
	assert.Error(t, err)
	assert.NotErrorIs(t, err, io.EOF, "a reset is not a clean close")
	assert.Eventually(t, func() bool { return s.Open() == 0 }, 2*time.Second, time.Millisecond)
}

func TestIdleTimeoutClosesQuietConns(t *testing.T) {
	s := start(t, WithIdleTimeout(30*time.Millisecond))
	c := dial(t, s)
	got, err := RoundTrip(c, "busy")
	require.NoError(t, err)
	assert.Equal(t, "busy", got)
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "closed after 30ms of quiet")
}

func TestTLS(t *testing.T) {
	pair, err := testcert.New()
	require.NoError(t, err)
	s := start(t, WithTLS(pair.Server))
	c, err := tls.Dial("tcp", s.Addr(), pair.Client)
	require.NoError(t, err)
	defer c.Close()
	got, err := RoundTrip(c, "secret")
	require.NoError(t, err)
	assert.Equal(t, "secret", got)
	assert.Equal(t, 1, s.Open())
}

func TestGreetingAndRestart(t *testing.T) {
	s := start(t, WithGreeting([]byte("hello")))
	c := dial(t, s)
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(buf))

	addr := s.Addr()
	require.NoError(t, s.Close())
	_, err = net.Dial("tcp", addr)
	require.Error(t, err, "a closed server refuses dials")

	s2, err := StartAt(addr)
	require.NoError(t, err)
	defer s2.Close()
	got, err := RoundTrip(dial(t, s2), "back")
	require.NoError(t, err)
	assert.Equal(t, "back", got)
}
