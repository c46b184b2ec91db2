// Package cluster_test holds the cluster tier: end-to-end tests of the doppel binary against the
// real single-node test cluster (make test-cluster). They skip unless DOPPEL_CLUSTER_KUBECONFIG
// names the cluster's kubeconfig.
package cluster_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"doppel.dev/doppel/internal/testenv"
)

// kubeconfig returns the test cluster's kubeconfig, or skips.
func kubeconfig(t *testing.T) string {
	t.Helper()
	kc := os.Getenv("DOPPEL_CLUSTER_KUBECONFIG")
	if kc == "" {
		t.Skip("cluster test: run with DOPPEL_CLUSTER_KUBECONFIG set (make test-cluster)")
	}
	return kc
}

func TestMain(m *testing.M) {
	if os.Getenv(testenv.PrivilegedEnv) == "1" && os.Geteuid() == 0 {
		if err := testenv.SweepNetNS(testenv.LaptopPrefix); err != nil {
			fmt.Fprintf(os.Stderr, "cluster tests: %v\n", err)
			os.Exit(1)
		}
	}
	os.Exit(testenv.Main(m))
}

// kubectl runs the cluster's kubectl (next to the kubeconfig's binaries: KUBECTL, else PATH).
func kubectl(t *testing.T, kc string, args ...string) string {
	t.Helper()
	bin := os.Getenv("KUBECTL")
	if bin == "" {
		bin = "kubectl"
	}
	out, err := exec.Command(bin, append([]string{"--kubeconfig", kc}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// rolloutCRD is a minimal CustomResourceDefinition of Argo Rollouts' Rollout.
const rolloutCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: rollouts.argoproj.io}
spec:
  group: argoproj.io
  names: {kind: Rollout, listKind: RolloutList, plural: rollouts, singular: rollout, shortNames: [ro]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

func applyCluster(t *testing.T, kc, manifest string) { applyIn(t, kc, "", manifest) }

// applyIn applies manifest (in namespace ns unless it is "").
func applyIn(t *testing.T, kc, ns, manifest string) {
	t.Helper()
	args := []string{"--kubeconfig", kc, "apply", "-f", "-"}
	if ns != "" {
		args = append(args, "-n", ns)
	}
	cmd := exec.Command(os.Getenv("KUBECTL"), args...)
	cmd.Stdin = strings.NewReader(manifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
}

// doppel ls lists a namespace's deployment, its service and its pod, in a table and as JSON.
func TestLs(t *testing.T) {
	kc := kubeconfig(t)
	doppel := testenv.BuildDoppel(t)
	ns := "doppel-ls-" + strings.ToLower(strings.ReplaceAll(time.Now().Format("150405.000"), ".", ""))
	kubectl(t, kc, "create", "namespace", ns)
	t.Cleanup(func() {
		exec.Command(os.Getenv("KUBECTL"), "--kubeconfig", kc, "delete", "namespace", ns, "--wait=false").Run()
	})
	kubectl(t, kc, "-n", ns, "create", "deployment", "web", "--image=doppel.local/pause:1")
	kubectl(t, kc, "-n", ns, "patch", "deployment", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"pause","imagePullPolicy":"Never"}]}}}}`)
	kubectl(t, kc, "-n", ns, "expose", "deployment", "web", "--port", "80")
	kubectl(t, kc, "-n", ns, "rollout", "status", "deployment/web", "--timeout=60s")

	out, err := exec.Command(doppel, "ls", "--kubeconfig", kc, "-n", ns, "-o", "json").Output()
	if err != nil {
		t.Fatalf("doppel ls: %v", err)
	}
	var ws []struct {
		Target     string   `json:"target"`
		Ready      string   `json:"ready"`
		Containers []string `json:"containers"`
	}
	if err := json.Unmarshal(out, &ws); err != nil {
		t.Fatalf("doppel ls -o json: %v\n%s", err, out)
	}
	seen := map[string]bool{}
	for _, w := range ws {
		seen[strings.SplitN(w.Target, "-", 2)[0]] = true
		if w.Target == "deployment/web" && (w.Ready != "1/1" || len(w.Containers) != 1 || w.Containers[0] != "pause") {
			t.Errorf("deployment/web: %+v", w)
		}
	}
	for _, want := range []string{"deployment/web", "service/web", "pod/web"} {
		if !seen[want] {
			t.Errorf("doppel ls lacks %s: %s", want, out)
		}
	}
	table, err := exec.Command(doppel, "ls", "--kubeconfig", kc, "-n", ns).Output()
	if err != nil || !strings.HasPrefix(string(table), "TARGET") || !strings.Contains(string(table), "deployment/web") {
		t.Errorf("doppel ls table: %v\n%s", err, table)
	}

	// A target resolves to a running pod and its container; a wrong name says what is close.
	for _, spec := range []string{"deployment/web", "service/web", "deploy/web/container/pause"} {
		out, err := exec.Command(doppel, "ls", "--kubeconfig", kc, "-n", ns, "-o", "json", spec).Output()
		var r map[string]string
		if err == nil {
			err = json.Unmarshal(out, &r)
		}
		if err != nil || !strings.HasPrefix(r["pod"], "web-") || r["container"] != "pause" || r["podIP"] == "" || r["node"] == "" {
			t.Errorf("doppel ls %s: %v %v\n%s", spec, err, r, out)
		}
	}
	out, err = exec.Command(doppel, "ls", "--kubeconfig", kc, "-n", ns, "deployment/wbe").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "deployment wbe not found in namespace "+ns+"; did you mean deployment/web?") {
		t.Errorf("doppel ls deployment/wbe: %v\n%s", err, out)
	}

	// An Argo Rollout, found through the dynamic client once its CRD exists (no controller
	// needed: the Rollout's selector picks the deployment's pod).
	applyCluster(t, kc, rolloutCRD)
	kubectl(t, kc, "wait", "--for=condition=Established", "crd/rollouts.argoproj.io", "--timeout=30s")
	applyIn(t, kc, ns, `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web-canary}
spec:
  selector: {matchLabels: {app: web}}
`)
	out, err = exec.Command(doppel, "ls", "--kubeconfig", kc, "-n", ns, "-o", "json", "rollout/web-canary").CombinedOutput()
	var r map[string]string
	if err == nil {
		err = json.Unmarshal(out, &r)
	}
	if err != nil || !strings.HasPrefix(r["pod"], "web-") || r["target"] != "rollout/web-canary" {
		t.Errorf("doppel ls rollout/web-canary: %v %v\n%s", err, r, out)
	}

	// As a kubectl plugin: kubectl finds kubectl-doppel on PATH and runs it.
	plugins := t.TempDir()
	if err := os.Symlink(doppel, filepath.Join(plugins, "kubectl-doppel")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Getenv("KUBECTL"), "doppel", "ls", "--kubeconfig", kc, "-n", ns)
	cmd.Env = append(os.Environ(), "PATH="+plugins+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "deployment/web") {
		t.Errorf("kubectl doppel ls: %v\n%s", err, out)
	}
	cmd = exec.Command(os.Getenv("KUBECTL"), "doppel", "--help")
	cmd.Env = append(os.Environ(), "PATH="+plugins+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "kubectl doppel [command]") {
		t.Errorf("kubectl doppel --help should name itself so: %v\n%s", err, out)
	}
}
