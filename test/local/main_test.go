// Package local_test is the privileged tier's end-to-end test of the doppel binary against a
// local target: a process in a network namespace of a small test cluster made by
// testenv.NewTopology. Programs run in the "laptop" namespace, which has loopback only, so
// whatever reaches the cluster went through doppel. Run as root with DOPPEL_PRIVILEGED_TESTS=1
// (make test-privileged).
package local_test

import (
	"os"
	"testing"

	"doppel.dev/doppel/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
