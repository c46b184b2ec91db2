package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"doppel.dev/doppel/internal/config"
)

// newConfigCmd builds `doppel config`, which helps write configuration
// files: `schema` prints their JSON Schema for editors, `check` reports
// every problem in one.
func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check configuration files and print their JSON Schema",
		Long: `A configuration file holds the options of "doppel exec" in YAML or JSON.
doppel exec reads .doppel/config.yaml (or .doppel/config.json) when present,
or the file given with -f; flags win over the file.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newConfigSchemaCmd(), newConfigCheckCmd())
	return cmd
}

func newConfigSchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "schema",
		Short: "Print the JSON Schema of the configuration file",
		Long: `Print the JSON Schema (draft 2020-12) of the configuration file, for editors.
Save it and point the file at it, e.g. with a first line
  # yaml-language-server: $schema=./schema.json
in YAML, or a "$schema" key in JSON.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := config.Schema()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

// configCheckOptions are the inputs of `doppel config check`.
type configCheckOptions struct {
	file string // "" means the default file in the working directory
}

func newConfigCheckCmd() *cobra.Command {
	var opts configCheckOptions
	return &cobra.Command{
		Use:   "check [FILE]",
		Short: "Report every problem in a configuration file",
		Long: `Report every problem in a configuration file, one per line as FILE:LINE:COL: message,
on standard error, and exit non-zero when there is any. Without FILE, check
.doppel/config.yaml or .doppel/config.json in the working directory.`,
		Args:         cobra.MaximumNArgs(1),
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.file = args[0]
			}
			return opts.run(cmd)
		},
	}
}

func (o *configCheckOptions) run(cmd *cobra.Command) error {
	file := o.file
	if file == "" {
		var err error
		if file, err = config.FindDefault("."); err != nil {
			return err
		}
		if file == "" {
			return errors.New("no configuration file to check: give one, or create " + config.DefaultFileYAML)
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	problems := config.Check(file, data)
	if len(problems) == 0 {
		fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", file)
		return nil
	}
	for _, p := range problems {
		fmt.Fprintln(cmd.ErrOrStderr(), p)
	}
	if len(problems) == 1 {
		return fmt.Errorf("1 problem in %s", file)
	}
	return fmt.Errorf("%d problems in %s", len(problems), file)
}
