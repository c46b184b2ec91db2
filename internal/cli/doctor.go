package cli

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"doppel.dev/doppel/internal/capture"
	"doppel.dev/doppel/internal/incoming"
	"doppel.dev/doppel/internal/intercept"
)

func newDoctorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Print what this machine supports of what doppel needs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "FEATURE\tKERNEL\tSTATUS\tDETAIL")
			for _, f := range intercept.Probe() {
				status := "ok"
				switch {
				case !f.Have && f.Required:
					status = "MISSING (required)"
				case !f.Have:
					status = "missing (optional)"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", f.Name, f.Kernel, status, f.Detail)
			}
			root := "no: doppel exec on a local target needs root (sudo) to start its agent"
			if os.Geteuid() == 0 {
				root = "yes"
			}
			fmt.Fprintf(w, "running as root\t\t%s\t\n", root)
			// What the agent of a local target does here: incoming traffic and files.
			for _, p := range []struct {
				name, kernel, what string
				probe              func() error
			}{
				{"nftables owned tables (incoming)", "5.12", "mirror and steal by redirect", incoming.ProbeOwnedTables},
				{"AF_PACKET TPACKET_V3 (incoming)", "3.2", "mirror by passive capture", capture.Probe},
				{"eBPF ring buffer, TCX links (incoming)", "6.6", "mirror by eBPF tap", capture.ProbeTap},
				{"openat2 RESOLVE_IN_ROOT (files)", "5.6", "the target's files", probeOpenat2},
			} {
				status, detail := "ok", "probed"
				if os.Geteuid() != 0 {
					status, detail = "unknown", "run doctor as root to probe"
				} else if err := p.probe(); err != nil {
					status, detail = "missing (optional)", fmt.Sprintf("%s unavailable: %v", p.what, err)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.name, p.kernel, status, detail)
			}
			w.Flush()
			if err := intercept.Check(); err != nil {
				return &exitError{code: 1, err: err}
			}
			fmt.Fprintln(cmd.OutOrStdout(), "\nThis machine can run doppel exec.")
			return nil
		},
	}
}
