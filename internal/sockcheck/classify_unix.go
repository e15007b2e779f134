//go:build unix

package sockcheck

import (
	"io"
	"syscall"
)

// classify turns what the peek saw into the socket's state: nothing
// waiting (EAGAIN), bytes waiting, the peer's close (a zero-byte read), or
// an error such as a reset.
func classify(n int, err error) (pending bool, _ error) {
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		return false, nil
	case err != nil:
		return false, err
	case n == 0:
		return false, io.EOF
	default:
		return true, nil
	}
}
