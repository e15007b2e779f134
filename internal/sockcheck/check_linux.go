//go:build linux

package sockcheck

import (
	"syscall"
	"unsafe"
)

const supported = true

// peekFD looks at the first waiting byte without taking it or blocking.
// It makes the raw system call: recv with MSG_PEEK|MSG_DONTWAIT returns at
// once, so the scheduler's bookkeeping for a call that might block (half
// the cost of the peek) is not needed.
func (ck *Checker) peekFD(fd uintptr) {
	for {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(&ck.buf[0])), uintptr(len(ck.buf)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		ck.n, ck.err = int(n), nil
		if errno != 0 {
			ck.n, ck.err = 0, errno
		}
		return
	}
}
