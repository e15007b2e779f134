package fakeconn

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConn(t *testing.T) {
	nc, err := Dial(context.Background(), "tcp", "x")
	require.NoError(t, err)
	c := nc.(*Conn)
	n, err := c.Write([]byte("abc"))
	assert.Equal(t, 3, n)
	assert.NoError(t, err)
	n, err = c.Read(make([]byte, 3))
	assert.Zero(t, n)
	assert.NoError(t, err)
	assert.NotNil(t, c.LocalAddr())
	assert.NotNil(t, c.RemoteAddr())
	assert.NoError(t, c.SetDeadline(time.Time{}))
	assert.NoError(t, c.SetReadDeadline(time.Time{}))
	assert.NoError(t, c.SetWriteDeadline(time.Time{}))
	assert.False(t, c.Closed())
	assert.NoError(t, c.Close())
	assert.True(t, c.Closed())
}
