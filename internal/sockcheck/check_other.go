//go:build !unix

package sockcheck

// supported is false: this platform has no portable non-blocking peek
// through the syscall package, so New returns nil and the pool relies on
// its other checks.
const supported = false

func (ck *Checker) peekFD(uintptr) {}

func classify(int, error) (bool, error) { return false, nil }
