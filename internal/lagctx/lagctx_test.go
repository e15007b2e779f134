package lagctx

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestEndThenWake(t *testing.T) {
	c := New(context.Background(), context.Canceled)
	assert.NoError(t, c.Err())
	c.End()
	assert.ErrorIs(t, c.Err(), context.Canceled)
	select {
	case <-c.Done():
		t.Fatal("Done closed before Wake")
	default:
	}
	c.Wake()
	c.Wake() // a second Wake is harmless
	<-c.Done()
}
