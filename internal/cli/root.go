// Package cli is doppel's command line: one file per subcommand, each with its options in a
// local struct. It owns the process's exit status and its signal handling; everything it starts
// (the agent, the supervised program) ends before Main returns.
package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"

	"doppel.dev/doppel/internal/intercept"
)

// version is set at build time with -ldflags "-X doppel.dev/doppel/internal/cli.version=...".
var version = "dev"

// exitError carries an exit status out of a command. A nil err means the status is the
// program's own and nothing is printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// Exit statuses of doppel's own failures, as env(1) and docker run use them.
const (
	exitFailure     = 125 // doppel itself failed
	exitCannotExec  = 126 // the program exists but cannot be run
	exitNotFound    = 127 // the program was not found
	exitSignalShift = 128 // a program killed by signal N exits 128+N
)

// Main runs doppel with args and returns the process's exit status.
func Main(args []string) int {
	intercept.MaybeRunTrampoline()
	if stop := startProfile(args); stop != nil {
		defer stop()
	}
	root := newRootCmd()
	if filepath.Base(os.Args[0]) == PluginName {
		// kubectl runs its plugins by file name: help then names the command as typed.
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl doppel"}
	}
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(os.Stderr, "doppel: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "doppel: %v\n", err)
	return exitFailure
}

// PluginName is the file name that makes doppel a kubectl plugin: with a kubectl-doppel on
// PATH (a link to doppel), `kubectl doppel exec ...` runs `doppel exec ...`.
const PluginName = "kubectl-doppel"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "doppel",
		Short: "Run a local program as if it ran inside a chosen process or pod",
		Long: `doppel runs a program on this machine as if it ran inside a target: its outgoing
connections and DNS lookups leave from the target's network, it reads the target's
resolv.conf, hosts and hostname, and it gets the target's environment.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newExecCmd(), newLsCmd(), newAgentCmd(), newDoctorCmd(), newConfigCmd(), newVersionCmd())
	return root
}

// newLogger returns the logger for level ("" means info).
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if level == "" {
		level = "info"
	}
	if err := l.UnmarshalText([]byte(strings.ToLower(level))); err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// profileEnv names a directory where every doppel process (the client and its agent) writes a
// CPU profile of its run, as <subcommand>-<pid>.pprof: a developer's tool, not a feature.
const profileEnv = "DOPPEL_CPUPROFILE_DIR"

func startProfile(args []string) (stop func()) {
	dir := os.Getenv(profileEnv)
	if dir == "" || len(args) == 0 {
		return nil
	}
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", args[0], os.Getpid())))
	if err != nil {
		fmt.Fprintf(os.Stderr, "doppel: %s: %v\n", profileEnv, err)
		return nil
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
