//go:build !linux

package yieldlock

import "runtime"

// yield lets another goroutine run: the portable fallback where the
// thread-level yield is not available through package syscall.
func yield() { runtime.Gosched() }
