package cli

import (
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"doppel.dev/doppel/internal/config"
)

type execOptions struct {
	configFile string
	flags      *config.Flags
	kube       *genericclioptions.ConfigFlags
}

func newExecCmd() *cobra.Command {
	var o execOptions
	cmd := &cobra.Command{
		Use:   "exec [flags] -- PROGRAM [ARGS...]",
		Short: "Run a program as if it ran inside the target",
		Long: `exec runs PROGRAM (and everything it starts) as if it ran inside the target: its
outgoing TCP and UDP leave from the target's network, it resolves names with the target's
resolv.conf, hosts and nameservers, sees the target's hostname, and gets the target's
environment under its own. Loopback stays local. The exit status is the program's.

When PROGRAM listens on a port, it receives the target's incoming traffic on that port: a
copy of every connection (the target still answers), or with --steal the connections
themselves, or only the HTTP requests an --http-* filter picks. It reads the target's mounted
volumes, service-account token and resolver files; the rest of its files are this machine's
(--fs-* flags change that).

A Kubernetes target (deployment/NAME, pod/NAME, service/NAME, ...; --target none for the
namespace alone) gets an agent beside its pod, a Job's pod on the pod's node or with
--ephemeral an ephemeral container, reached through the API server's port-forward and removed
when the session ends; kubectl's flags (--kubeconfig, --context, -n) apply. docs/KUBERNETES.md
says what the agent needs. For a local target (pid:PID) doppel needs root to start its agent;
under sudo the program runs as the user who called sudo.`,
		Example: `  doppel exec --target deployment/orders -n shop -- ./myservice
  doppel exec -t deployment/orders -n shop --steal --http-header 'X-Debug-User: alice' -- ./myservice
  doppel exec -t pod/orders-7d9c-x2x4l/container/app --ephemeral -- ./myservice
  doppel exec -t none -n shop -- psql -h db
  sudo doppel exec --target pid:4242 -- curl http://nginx/
  sudo doppel exec -t pid:4242 --local-cidr 10.0.0.0/8 -- ./myservice
  sudo doppel exec -t pid:4242 --fs-mode write --fs-write /var/lib/app -- ./myservice`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVarP(&o.configFile, "config", "f", "", "configuration file (YAML or JSON; default .doppel/config.yaml when present)")
	o.flags = config.BindFlags(cmd.Flags())
	o.kube = genericclioptions.NewConfigFlags(true)
	o.kube.AddFlags(cmd.Flags())
	return cmd
}

// loadConfig reads the configuration file and lays the flags over it.
func (o *execOptions) loadConfig() (*config.Config, error) {
	var cfg *config.Config
	var err error
	if o.configFile != "" {
		cfg, err = config.Load(o.configFile)
	} else {
		cfg, _, err = config.LoadDefault(".")
	}
	if err != nil {
		return nil, err
	}
	if err := o.flags.Apply(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
