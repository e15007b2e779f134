//go:build !unix

package sockcheck

// supported is false: this platform has no portable non-blocking peek
// through the syscall package, so New returns nil and the pool relies on
// its other checks.
const supported = false

func (ck *Checker) peek(fd uintptr) (int, error) { return 0, nil }

func classify(int, error) (bool, error) { return false, nil }

func hangup(uintptr) error { return nil }
