//go:build !linux

package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"doppel.dev/doppel/internal/intercept"
)

func (o *execOptions) run(cmd *cobra.Command, args []string) error {
	return &exitError{code: exitFailure, err: fmt.Errorf("doppel exec on %s: %w", runtime.GOOS, intercept.ErrNotSupported)}
}

// probeOpenat2 fails: openat2 is Linux's.
func probeOpenat2() error {
	return fmt.Errorf("openat2 on %s: %w", runtime.GOOS, intercept.ErrNotSupported)
}
