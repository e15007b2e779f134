package connpoolfleet_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the member helper when the test binary is re-executed as
// one (see helper_test.go), and the tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	goleak.VerifyTestMain(m)
}
