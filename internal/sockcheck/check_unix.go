//go:build unix && (!linux || 386)

package sockcheck

import "syscall"

const supported = true

// peek looks at the first byte waiting on socket fd without taking it.
// Go's sockets are non-blocking, so this returns EAGAIN at once when
// nothing waits.
func (ck *Checker) peek(fd uintptr) (int, error) {
	for {
		n, _, err := syscall.Recvfrom(int(fd), ck.buf[:], syscall.MSG_PEEK)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// hangup would report a peer's close hidden behind unread bytes; this
// platform has no portable way to tell (no POLLRDHUP), so it reports
// nothing and such a close is found by the conn's next read.
func hangup(uintptr) error { return nil }
