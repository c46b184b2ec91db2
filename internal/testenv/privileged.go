package testenv

import (
	"os"
	"testing"
)

// PrivilegedEnv is the environment variable that turns on the privileged test tier.
const PrivilegedEnv = "DOPPEL_PRIVILEGED_TESTS"

// LaptopPrefix starts the names of the network namespaces NewLaptop makes:
// LaptopPrefix<test binary pid>-<n>. SweepNetNS(LaptopPrefix) removes those of dead test binaries.
const LaptopPrefix = "dpl-lap"

// Privileged skips t unless DOPPEL_PRIVILEGED_TESTS=1. When the variable is set but the process
// is not root, t fails: a privileged run that silently skips everything would look green.
func Privileged(t testing.TB) {
	t.Helper()
	if os.Getenv(PrivilegedEnv) != "1" {
		t.Skipf("privileged test: run as root with %s=1 (make test-privileged)", PrivilegedEnv)
	}
	if euid := os.Geteuid(); euid != 0 {
		t.Fatalf("%s=1 but the test runs as euid %d: privileged tests must run as root", PrivilegedEnv, euid)
	}
}
