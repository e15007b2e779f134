//go:build linux && !386

package sockcheck

import (
	"io"
	"syscall"
	"unsafe"
)

const supported = true

// peek looks at the first byte waiting on socket fd without taking it or
// blocking. It makes the raw system call: recv with MSG_PEEK|MSG_DONTWAIT returns at
// once, so the scheduler's bookkeeping for a call that might block (half
// the cost of the peek) is not needed.
func (ck *Checker) peek(fd uintptr) (int, error) {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(&ck.buf[0])), uintptr(len(ck.buf)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case syscall.EINTR:
			continue
		case 0:
			return int(n), nil
		}
		return 0, errno
	}
}

// The poll events the syscall package lacks. pollRDHUP: the peer has shut
// down its side, whether or not bytes it sent are still unread.
const (
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
)

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// hangup reports io.EOF when the peer of socket fd has closed its side or
// the socket has failed, even while bytes wait unread, which a peek cannot
// tell. It polls with a zero timeout, so it never blocks.
func hangup(fd uintptr) error {
	pfd := pollFd{fd: int32(fd), events: pollRDHUP}
	var zero syscall.Timespec
	for {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1,
			uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			return errno
		case pfd.revents&(pollRDHUP|pollHUP|pollERR) != 0:
			return io.EOF
		}
		return nil
	}
}
