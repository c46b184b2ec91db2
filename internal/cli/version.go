package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"doppel.dev/doppel/internal/wire"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print doppel's version and protocol version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "doppel %s (protocol %d, %s, %s/%s)\n", version, wire.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
