//go:build !(amd64 || arm64) || connpool_nofpunwind

package callstack

import "runtime"

// FramePointers reports whether Capture follows frame pointers.
const FramePointers = false

// Capture fills pcs with the return addresses of the calls on the calling
// goroutine's stack, innermost first, and returns how many it wrote. The
// first is the return address of the call to Capture, in Capture's
// caller: the stack that runtime.Callers(1, pcs) called there would give.
//
// Here it is runtime.Callers.
//
//go:noinline
func Capture(pcs []uintptr) int {
	return runtime.Callers(2, pcs) // 0 is runtime.Callers, 1 Capture
}
