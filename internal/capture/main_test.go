package capture

import (
	"os"
	"testing"

	"doppel.dev/doppel/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
