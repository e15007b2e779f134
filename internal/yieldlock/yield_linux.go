//go:build linux

package yieldlock

import "syscall"

// yield gives the core to another runnable thread, if there is one. The
// goroutine keeps its P, so no other goroutine is scheduled in between;
// that is the point: the thread that holds the lock gets the core.
func yield() { _, _, _ = syscall.RawSyscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
