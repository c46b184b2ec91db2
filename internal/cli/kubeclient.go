package cli

import (
	"errors"
	"fmt"
	"os"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"doppel.dev/doppel/internal/config"
)

// kubeClients are the clients of the cluster kubectl's flags name, and the namespace.
type kubeClients struct {
	rest *rest.Config
	cs   *kubernetes.Clientset
	dyn  dynamic.Interface
	ns   string
}

// errNoCluster is the error when nothing names a cluster: no kubeconfig and not in a pod.
var errNoCluster = errors.New("no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG or write ~/.kube/config (a pod uses its service account)")

// newKubeClients builds the clients from kubectl's flags, over the config file's kubernetes
// section (cfg may be nil). A missing configuration is one clear error, not a connection to
// client-go's default of localhost:8080.
func newKubeClients(flags *genericclioptions.ConfigFlags, cfg *config.Config) (*kubeClients, error) {
	if cfg != nil {
		for _, f := range []struct {
			flag *string
			file string
		}{
			{flags.KubeConfig, cfg.Kubernetes.Kubeconfig},
			{flags.Context, cfg.Kubernetes.Context},
			{flags.Namespace, cfg.Kubernetes.Namespace},
		} {
			if f.flag != nil && *f.flag == "" && f.file != "" {
				*f.flag = f.file
			}
		}
	}
	loader := flags.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	inCluster := os.Getenv("KUBERNETES_SERVICE_HOST") != ""
	if len(raw.Clusters) == 0 && !inCluster && (flags.APIServer == nil || *flags.APIServer == "") {
		return nil, errNoCluster
	}
	rc, err := flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w (pass --kubeconfig or set KUBECONFIG)", err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	k := &kubeClients{rest: rc, ns: ns}
	if k.cs, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	if k.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return nil, err
	}
	return k, nil
}
