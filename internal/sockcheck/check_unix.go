//go:build unix && !linux

package sockcheck

import "syscall"

const supported = true

// peekFD looks at the first waiting byte without taking it. Go's sockets
// are non-blocking, so this returns EAGAIN at once when nothing waits.
func (ck *Checker) peekFD(fd uintptr) {
	for {
		n, _, err := syscall.Recvfrom(int(fd), ck.buf[:], syscall.MSG_PEEK)
		if err == syscall.EINTR {
			continue
		}
		ck.n, ck.err = n, err
		return
	}
}
