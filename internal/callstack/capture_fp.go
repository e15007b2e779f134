//go:build (amd64 || arm64) && !connpool_nofpunwind

package callstack

import "unsafe"

// FramePointers reports whether Capture follows frame pointers.
const FramePointers = true

// maxStack bounds how far above the first frame the walk may go: the
// runtime's limit on a goroutine's stack on 64-bit platforms.
const maxStack = 1 << 30

// getfp returns the frame pointer of its caller: the address where the
// caller saved its own caller's frame pointer, with the caller's return
// address one word above. Implemented in assembly, without a frame of its
// own.
func getfp() unsafe.Pointer

// Capture fills pcs with the return addresses of the calls on the calling
// goroutine's stack, innermost first, and returns how many it wrote. The
// first is the return address of the call to Capture, in Capture's
// caller: the stack that runtime.Callers(1, pcs) called there would give.
//
// Capture must not be inlined: the frame it reads first is its own.
//
//go:noinline
func Capture(pcs []uintptr) int {
	return walk(getfp(), pcs)
}

// walk follows the frame-pointer chain from fp. Each frame's saved frame
// pointer is the one of its caller, at a higher address on the same
// stack; the chain ends with 0, saved by the first function of the
// goroutine (the runtime starts each goroutine with no frame pointer).
// walk stops there, or at the first link that does not point up the
// stack within the largest stack a goroutine may have, so that a chain
// broken by code that does not keep frame pointers (C, through cgo) ends
// the stack instead of sending the walk into memory that is not a stack.
//
// It makes no calls and has no stack check, so the goroutine cannot be
// preempted at a safe point or have its stack moved while it reads.
//
//go:nosplit
func walk(fp unsafe.Pointer, pcs []uintptr) int {
	start := uintptr(fp)
	n := 0
	for n < len(pcs) && fp != nil {
		// The return address sits one word above the frame pointer.
		pcs[n] = *(*uintptr)(unsafe.Add(fp, unsafe.Sizeof(uintptr(0))))
		n++
		next := *(*unsafe.Pointer)(fp)
		if uintptr(next) <= uintptr(fp) || uintptr(next)-start >= maxStack ||
			uintptr(next)%unsafe.Sizeof(uintptr(0)) != 0 {
			break
		}
		fp = next
	}
	return n
}
