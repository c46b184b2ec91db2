package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"

	"doppel.dev/doppel/internal/kube"
)

// lsOptions are the flags of `doppel ls`.
type lsOptions struct {
	kube   *genericclioptions.ConfigFlags
	output string
}

func newLsCmd() *cobra.Command {
	o := &lsOptions{kube: genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the targets of a Kubernetes namespace",
		Long: `ls lists what --target can name in a namespace: deployments, statefulsets, daemonsets,
jobs, services with a selector, and running pods, with their ready counts and containers. It
uses kubectl's configuration: --kubeconfig, KUBECONFIG, --context, -n/--namespace.`,
		Example: "  doppel ls -n shop\n  doppel ls -n shop -o json",
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	o.kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", `"table" or "json"`)
	return cmd
}

func (o *lsOptions) run(cmd *cobra.Command) error {
	if o.output != "table" && o.output != "json" {
		return &exitError{code: 1, err: fmt.Errorf("--output %q: want table or json", o.output)}
	}
	cfg, err := o.kube.ToRESTConfig()
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("kubeconfig: %w (pass --kubeconfig or set KUBECONFIG)", err)}
	}
	ns, _, err := o.kube.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return &exitError{code: 1, err: fmt.Errorf("namespace: %w", err)}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	ws, err := kube.List(cmd.Context(), cs, ns)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	out := cmd.OutOrStdout()
	if o.output == "json" {
		if ws == nil {
			ws = []kube.Workload{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(ws)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TARGET\tREADY\tCONTAINERS")
	for _, wl := range ws {
		fmt.Fprintf(w, "%s\t%s\t%s\n", wl.Target, wl.Ready, strings.Join(wl.Containers, ","))
	}
	return w.Flush()
}
