//go:build unix && !linux

package sockcheck

import "syscall"

const supported = true

// peek looks at the first waiting byte without taking it. Go's sockets
// are non-blocking, so this returns EAGAIN at once when nothing waits.
func (ck *Checker) peek() (int, error) {
	for {
		n, _, err := syscall.Recvfrom(int(ck.fd), ck.buf[:], syscall.MSG_PEEK)
		if err != syscall.EINTR {
			return n, err
		}
	}
}
