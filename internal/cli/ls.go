package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"doppel.dev/doppel/internal/kube"
	"doppel.dev/doppel/internal/target"
)

// lsOptions are the flags of `doppel ls`.
type lsOptions struct {
	kube   *genericclioptions.ConfigFlags
	output string
}

func newLsCmd() *cobra.Command {
	o := &lsOptions{kube: genericclioptions.NewConfigFlags(true)}
	cmd := &cobra.Command{
		Use:   "ls [TARGET]",
		Short: "List the targets of a Kubernetes namespace, or show the pod and container a target names",
		Long: `ls lists what --target can name in a namespace: deployments, statefulsets, daemonsets,
jobs, services with a selector, and running pods, with their ready counts and containers. With
a TARGET it shows the pod and container a session would run beside instead. It uses kubectl's
configuration: --kubeconfig, KUBECONFIG, --context, -n/--namespace.`,
		Example: "  doppel ls -n shop\n  doppel ls -n shop -o json\n  doppel ls -n shop deployment/nginx",
		Args:    cobra.MaximumNArgs(1),
		RunE:    func(cmd *cobra.Command, args []string) error { return o.run(cmd, args) },
	}
	o.kube.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&o.output, "output", "o", "table", `"table" or "json"`)
	return cmd
}

func (o *lsOptions) run(cmd *cobra.Command, args []string) error {
	if o.output != "table" && o.output != "json" {
		return &exitError{code: 1, err: fmt.Errorf("--output %q: want table or json", o.output)}
	}
	k, err := newKubeClients(o.kube, nil)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	cs, ns := k.cs, k.ns
	if len(args) == 1 {
		return o.resolve(cmd, k, args[0])
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

// resolve shows the pod and container that spec names.
func (o *lsOptions) resolve(cmd *cobra.Command, k *kubeClients, spec string) error {
	t, err := target.Parse(spec)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	ns := k.ns
	r, err := kube.Resolve(cmd.Context(), k.cs, k.dyn, ns, t)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	row := map[string]string{"target": t.String(), "namespace": ns, "pod": r.Pod.Name, "container": r.Container,
		"node": r.Pod.Spec.NodeName, "podIP": r.Pod.Status.PodIP}
	out := cmd.OutOrStdout()
	if o.output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(row)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TARGET\tPOD\tCONTAINER\tNODE\tPOD IP")
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", row["target"], row["pod"], row["container"], row["node"], row["podIP"])
	return w.Flush()
}
