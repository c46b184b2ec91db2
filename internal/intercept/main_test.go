package intercept

import (
	"errors"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	MaybeRunTrampoline()
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("doppel.dev/doppel/internal/intercept.forker"))
}

// helperEnv makes the test binary act as a test program instead of running tests.
const helperEnv = "DOPPEL_INTERCEPT_TEST_HELPER"

// requirePrivileged skips the test unless DOPPEL_PRIVILEGED_TESTS=1, and fails it if that is set
// but the test does not run as root.
func requirePrivileged(t *testing.T) {
	t.Helper()
	if os.Getenv("DOPPEL_PRIVILEGED_TESTS") != "1" {
		t.Skip("privileged test: set DOPPEL_PRIVILEGED_TESTS=1 and run as root")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("DOPPEL_PRIVILEGED_TESTS=1 but euid is %d, not 0", os.Geteuid())
	}
}

func TestUnsupportedFeatureError(t *testing.T) {
	err := error(&UnsupportedFeatureError{Name: "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", MinKernel: "6.0", Have: "5.15.0-91-generic"})
	want := "doppel exec needs SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 6.0 or newer); this kernel is 5.15.0-91-generic"
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrNotSupported) {
		t.Errorf("errors.Is(%v, ErrNotSupported) = false", err)
	}
}
