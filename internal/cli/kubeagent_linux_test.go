package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"doppel.dev/doppel/internal/config"
	"doppel.dev/doppel/internal/kube"
	"doppel.dev/doppel/internal/target"
)

func TestAgentCapabilities(t *testing.T) {
	off := false
	for _, tc := range []struct {
		name string
		edit func(*config.Config)
		want []corev1.Capability
	}{
		{name: "defaults", edit: func(*config.Config) {},
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"}},
		{name: "files write", edit: func(c *config.Config) { c.Files.Mode = config.FilesModeWrite },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"}},
		{name: "files local", edit: func(c *config.Config) { c.Files.Mode = config.FilesModeLocal },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "NET_ADMIN"}},
		{name: "incoming enabled by default", edit: func(c *config.Config) { c.Incoming.Enabled = nil },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"}},
		{name: "capture", edit: func(c *config.Config) { c.Incoming.Mirror = config.MirrorCapture },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_RAW"}},
		{name: "tap", edit: func(c *config.Config) { c.Incoming.Mirror = config.MirrorTap },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "BPF", "NET_ADMIN"}},
		{name: "ephemeral tap", edit: func(c *config.Config) { c.Agent.Ephemeral, c.Incoming.Mirror = true, config.MirrorTap },
			want: []corev1.Capability{"BPF", "NET_ADMIN"}},
		{name: "steal with tap", edit: func(c *config.Config) { c.Incoming.Mode, c.Incoming.Mirror = config.ModeSteal, config.MirrorTap },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"}},
		{name: "steal", edit: func(c *config.Config) { c.Incoming.Mode = config.ModeSteal },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"}},
		{
			// Stealing always needs the rules, whatever the mirror method says.
			name: "steal with capture",
			edit: func(c *config.Config) { c.Incoming.Mode, c.Incoming.Mirror = config.ModeSteal, config.MirrorCapture },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"},
		},
		{name: "no incoming", edit: func(c *config.Config) { c.Incoming.Enabled = &off },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}},
		{name: "no incoming, files local", edit: func(c *config.Config) { c.Incoming.Enabled, c.Files.Mode = &off, config.FilesModeLocal },
			want: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE"}},
		{name: "ephemeral", edit: func(c *config.Config) { c.Agent.Ephemeral = true },
			want: []corev1.Capability{"NET_ADMIN"}},
		{name: "ephemeral, files write", edit: func(c *config.Config) { c.Agent.Ephemeral, c.Files.Mode = true, config.FilesModeWrite },
			want: []corev1.Capability{"NET_ADMIN"}},
		{name: "ephemeral capture", edit: func(c *config.Config) { c.Agent.Ephemeral, c.Incoming.Mirror = true, config.MirrorCapture },
			want: []corev1.Capability{"NET_RAW"}},
		{name: "ephemeral steal", edit: func(c *config.Config) { c.Agent.Ephemeral, c.Incoming.Mode = true, config.ModeSteal },
			want: []corev1.Capability{"NET_ADMIN"}},
		{name: "ephemeral, no incoming", edit: func(c *config.Config) { c.Agent.Ephemeral, c.Incoming.Enabled = true, &off },
			want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.edit(cfg)
			if diff := cmp.Diff(tc.want, agentCapabilities(cfg)); diff != "" {
				t.Errorf("agentCapabilities (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAgentSpec(t *testing.T) {
	tgt, err := target.Parse("deployment/nginx")
	if err != nil {
		t.Fatal(err)
	}
	defaultCaps := []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN"}
	base := func() kube.AgentSpec {
		return kube.AgentSpec{
			Image:        "ghcr.io/doppel-dev/doppel-agent:" + version,
			Capabilities: defaultCaps,
			Grace:        5 * time.Second,
			Target:       "deployment/nginx",
		}
	}
	for _, tc := range []struct {
		name   string
		edit   func(*config.Config)
		want   func(*kube.AgentSpec)
		errHas []string
	}{
		{name: "defaults", edit: func(*config.Config) {}, want: func(*kube.AgentSpec) {}},
		{
			name: "settings",
			edit: func(c *config.Config) {
				c.LogLevel = "debug"
				a := &c.Agent
				a.Image = "registry.example.com/doppel-agent:v1"
				a.PullPolicy = "Always"
				a.Namespace = "doppel"
				a.Privileged = true
				a.GracePeriod = config.Duration(30 * time.Second)
				a.Labels = map[string]string{"team": "orders"}
				a.Annotations = map[string]string{"owner": "orders@example.com"}
				a.NodeSelector = map[string]string{"disk": "ssd"}
			},
			want: func(s *kube.AgentSpec) {
				s.Image = "registry.example.com/doppel-agent:v1"
				s.PullPolicy = corev1.PullAlways
				s.Namespace = "doppel"
				s.Privileged = true
				s.Grace = 30 * time.Second
				s.LogLevel = "debug"
				s.Labels = map[string]string{"team": "orders"}
				s.Annotations = map[string]string{"owner": "orders@example.com"}
				s.NodeSelector = map[string]string{"disk": "ssd"}
			},
		},
		{
			// Only debug is passed on: the agent's own default is quieter than the CLI's.
			name: "log level info",
			edit: func(c *config.Config) { c.LogLevel = "info" },
			want: func(*kube.AgentSpec) {},
		},
		{
			name: "tolerations",
			edit: func(c *config.Config) {
				c.Agent.Tolerations = []config.Toleration{
					{Key: "dedicated", Operator: "Equal", Value: "db", Effect: "NoSchedule"},
					{Key: "gpu", Operator: "Exists"},
					{Operator: "Exists", Effect: "NoExecute"},
				}
			},
			want: func(s *kube.AgentSpec) {
				s.Tolerations = []corev1.Toleration{
					{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule},
					{Key: "gpu", Operator: corev1.TolerationOpExists},
					{Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
				}
			},
		},
		{
			name: "resources",
			edit: func(c *config.Config) {
				c.Agent.Resources = config.Resources{
					Requests: map[string]string{"cpu": "50m", "memory": "32Mi"},
					Limits:   map[string]string{"memory": "128Mi", "example.com/gpu": "1"},
				}
			},
			want: func(s *kube.AgentSpec) {
				s.Resources = corev1.ResourceRequirements{
					Requests: corev1.ResourceList{"cpu": resource.MustParse("50m"), "memory": resource.MustParse("32Mi")},
					Limits:   corev1.ResourceList{"memory": resource.MustParse("128Mi"), "example.com/gpu": resource.MustParse("1")},
				}
			},
		},
		{
			name:   "bad request",
			edit:   func(c *config.Config) { c.Agent.Resources.Requests = map[string]string{"cpu": "lots"} },
			errHas: []string{"agent.resources", "cpu", `"lots"`},
		},
		{
			name:   "bad limit",
			edit:   func(c *config.Config) { c.Agent.Resources.Limits = map[string]string{"memory": "128 MB"} },
			errHas: []string{"agent.resources", "memory", `"128 MB"`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.edit(cfg)
			got, err := agentSpec(cfg, tgt)
			if len(tc.errHas) > 0 {
				if err == nil {
					t.Fatal("agentSpec succeeded, want an error")
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("agentSpec error %q does not mention %s", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := base()
			tc.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("agentSpec (-want +got):\n%s", diff)
			}
		})
	}
}
