package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"doppel.dev/doppel/internal/config"
	"doppel.dev/doppel/internal/kube"
	"doppel.dev/doppel/internal/session"
	"doppel.dev/doppel/internal/target"
	"doppel.dev/doppel/internal/wire"
)

// DefaultAgentImage is the agent image's repository; the tag is doppel's version.
const DefaultAgentImage = "ghcr.io/doppel-dev/doppel-agent"

// kubeAgent is the agent of a Kubernetes target: a Job's pod beside the target pod, reached
// through the API server's port-forward.
type kubeAgent struct {
	k        *kubeClients
	agent    *kube.Agent
	secret   [wire.SecretSize]byte
	deadline time.Time // when connect gives up
	never    chan struct{}
	say      func(format string, args ...any) // progress on standard error
	target   kube.Resolved                    // the target's pod and container (none: nil pod)
}

func (a *kubeAgent) done() <-chan struct{}           { return a.never }
func (a *kubeAgent) started()                        { a.say("program started") }
func (a *kubeAgent) why() error                      { return nil }
func (a *kubeAgent) channel() *session.Sockets       { return nil }
func (a *kubeAgent) passedSockets() *session.Sockets { return nil }

// specEnv completes an environment the target's process wrote over (what survived of it is
// env) with what the pod's spec gives its container, and says what may still be missing.
func (a *kubeAgent) specEnv(ctx context.Context, env []string, note string) ([]string, string) {
	if a.target.Pod == nil {
		return env, note
	}
	spec, missing, err := kube.ContainerEnv(ctx, a.k.cs, a.target.Pod, a.target.Container)
	if err != nil {
		return env, note + "; " + err.Error()
	}
	merged := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		merged[k] = v
	}
	maps.Copy(merged, spec)
	note += "; doppel rebuilt it from the pod's spec, but the image's own variables may be missing"
	if len(missing) > 0 {
		note += ", and these could not be read: " + strings.Join(missing, "; ")
	}
	return kube.EnvList(merged), note
}

// lost explains a lost session with the agent pod's state when it stopped.
func (a *kubeAgent) lost() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if why := a.agent.Failed(ctx); why != "" {
		return fmt.Errorf("lost the connection to the agent: %s", why)
	}
	return errors.New("lost the connection to the agent (through the API server's port-forward)")
}

func (a *kubeAgent) stop() {
	if err := a.agent.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "doppel: %v\n", err)
	}
}

// startKubeAgent resolves the target to a pod and starts the agent beside it, reporting each
// phase of the start on standard error (unless the log level is above info).
func startKubeAgent(ctx context.Context, tgt target.Target, cfg *config.Config, flags *genericclioptions.ConfigFlags, log *slog.Logger) (*kubeAgent, error) {
	k, err := newKubeClients(flags, cfg)
	if err != nil {
		return nil, err
	}
	cs, ns := k.cs, k.ns
	begin := time.Now()
	quiet := !log.Enabled(ctx, slog.LevelInfo)
	say := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(os.Stderr, "doppel: [%5.2fs] %s\n", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
		}
	}
	var r kube.Resolved
	if tgt.None {
		say("no target: an agent of its own in namespace %s", ns)
	} else {
		if r, err = kube.Resolve(ctx, cs, k.dyn, ns, tgt); err != nil {
			return nil, err
		}
		say("target %s: pod %s/%s, container %s, node %s", tgt, r.Pod.Namespace, r.Pod.Name, r.Container, r.Pod.Spec.NodeName)
	}

	timeout := time.Duration(cfg.Agent.StartTimeout)
	if timeout <= 0 {
		timeout = config.DefaultStartTimeout
	}
	spec, err := agentSpec(cfg, tgt)
	if err != nil {
		return nil, err
	}
	secret := session.NewSecret()
	spec.Secret = secret[:]
	spec.Progress = func(phase, detail string) {
		if detail != "" {
			say("agent %s: %s", phase, detail)
		} else {
			say("agent %s", phase)
		}
	}
	var a *kube.Agent
	switch {
	case tgt.None:
		if cfg.Agent.Ephemeral {
			return nil, errors.New("--ephemeral needs a target pod to join; --target none runs the agent in a pod of its own")
		}
		a, err = kube.StartTargetless(ctx, cs, spec, ns, timeout)
	case cfg.Agent.Ephemeral:
		a, err = kube.StartEphemeral(ctx, cs, spec, r.Pod, r.Container, timeout)
	default:
		a, err = kube.StartAgent(ctx, cs, spec, r.Pod, r.Container, timeout)
	}
	if err != nil {
		return nil, err
	}
	return &kubeAgent{k: k, agent: a, secret: secret, deadline: begin.Add(timeout), never: make(chan struct{}), say: say, target: r}, nil
}

// agentSpec is the agent pod that cfg asks for, holding the capabilities its features need.
func agentSpec(cfg *config.Config, tgt target.Target) (kube.AgentSpec, error) {
	a := cfg.Agent
	spec := kube.AgentSpec{
		Image:        a.Image,
		PullPolicy:   corev1.PullPolicy(a.PullPolicy),
		Namespace:    a.Namespace,
		Labels:       a.Labels,
		Annotations:  a.Annotations,
		NodeSelector: a.NodeSelector,
		Privileged:   a.Privileged,
		Capabilities: agentCapabilities(cfg),
		Grace:        time.Duration(a.GracePeriod),
		Target:       tgt.String(),
	}
	if spec.Image == "" {
		spec.Image = DefaultAgentImage + ":" + version
	}
	if cfg.LogLevel == "debug" {
		spec.LogLevel = "debug"
	}
	for _, t := range a.Tolerations {
		spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: t.Key, Operator: corev1.TolerationOperator(t.Operator),
			Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
	}
	for _, side := range []struct {
		name string
		from map[string]string
		to   *corev1.ResourceList
	}{{"requests", a.Resources.Requests, &spec.Resources.Requests}, {"limits", a.Resources.Limits, &spec.Resources.Limits}} {
		for name, q := range side.from {
			v, err := resource.ParseQuantity(q)
			if err != nil {
				return spec, fmt.Errorf("agent.resources.%s.%s %q: %w", side.name, name, q, err)
			}
			if *side.to == nil {
				*side.to = corev1.ResourceList{}
			}
			(*side.to)[corev1.ResourceName(name)] = v
		}
	}
	return spec, nil
}

// agentCapabilities are the capabilities the agent's features need. In a Job's pod beside the
// target: SYS_ADMIN to enter the target's network and UTS namespaces, SYS_PTRACE to read its
// process's root, environment and namespaces, DAC_READ_SEARCH to read the target's files
// whatever their owner. An ephemeral agent shares the target's namespaces and runs as the
// pod's user, so it needs none of those (and the agent of a session without a target none at
// all: kube.TargetlessJob drops every one). Both need NET_ADMIN to write the rules of incoming
// traffic, or NET_RAW to capture it.
func agentCapabilities(cfg *config.Config) []corev1.Capability {
	var caps []corev1.Capability
	if !cfg.Agent.Ephemeral {
		caps = append(caps, "SYS_ADMIN", "SYS_PTRACE")
		if cfg.Files.IsEnabled() {
			caps = append(caps, "DAC_READ_SEARCH")
		}
	}
	if in := cfg.Incoming; in.IsEnabled() {
		switch {
		case in.Steals():
			caps = append(caps, "NET_ADMIN")
		case in.Mirror == config.MirrorCapture:
			caps = append(caps, "NET_RAW")
		case in.Mirror == config.MirrorTap:
			caps = append(caps, "BPF", "NET_ADMIN")
		default:
			caps = append(caps, "NET_ADMIN")
		}
	}
	return caps
}

// connect opens the session through port-forward, retrying while the agent is still coming
// up to listen, until the start deadline (at least 15 seconds from now).
func (a *kubeAgent) connect(ctx context.Context) (*session.Client, error) {
	deadline := a.deadline
	if d := time.Now().Add(15 * time.Second); d.After(deadline) {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var last error
	for {
		conn, err := kube.DialPod(ctx, a.k.rest, a.k.cs, a.agent.Namespace, a.agent.Pod, a.agent.Port)
		if err == nil {
			var c *session.Client
			if c, err = session.Handshake(ctx, conn, a.secret, wire.PortForwardStreamWindow); err == nil {
				a.say("connected through port-forward to %s/%s:%d", a.agent.Namespace, a.agent.Pod, a.agent.Port)
				return c, nil
			}
			conn.Close()
			if errors.Is(err, session.ErrRejected) {
				return nil, err
			}
		}
		last = err
		if why := a.agent.Failed(ctx); why != "" {
			return nil, fmt.Errorf("%s; the last attempt to connect to it: %v", why, last)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to the agent in pod %s/%s: %w", a.agent.Namespace, a.agent.Pod, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
