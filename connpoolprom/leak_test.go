package connpoolprom_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: a
// pool's maintainer, a dial, a group's sweeper, a test server.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
