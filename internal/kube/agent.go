package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"doppel.dev/doppel/internal/wire"
)

// AgentPort is the port the agent listens on, on the loopback of its own pod (the agent Job's
// pod has a network namespace of its own, so the port is always free there).
const AgentPort = 4711

// Labels on everything doppel creates in a cluster.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelName      = "app.kubernetes.io/name"
	LabelSession   = "doppel.dev/session"
	AnnotTarget    = "doppel.dev/target"
	managedBy      = "doppel"
	agentName      = "doppel-agent"
	secretKey      = "secret"
)

// AgentSpec says how to run an agent beside a target pod.
type AgentSpec struct {
	// Image is the agent image; PullPolicy its pull policy ("" is IfNotPresent).
	Image      string
	PullPolicy corev1.PullPolicy
	// Namespace is where the agent's Job and Secret are made; "" is the target pod's.
	Namespace string
	// Labels and Annotations are added to the Job, its pod and the Secret.
	Labels, Annotations map[string]string
	// NodeSelector is added to the agent's pod (which is pinned to the target's node anyway).
	NodeSelector map[string]string
	// Tolerations of the agent's pod; nil tolerates every taint, as the pod must run on the
	// node where the target runs whatever its taints.
	Tolerations []corev1.Toleration
	Resources   corev1.ResourceRequirements
	// Capabilities are the Linux capabilities the agent gets (every other one is dropped);
	// Privileged makes it a privileged container instead.
	Capabilities []corev1.Capability
	Privileged   bool
	// Secret is the session's secret, given to the agent through a Secret object.
	Secret []byte
	// Grace is the agent's --grace; LogLevel its --log-level.
	Grace    time.Duration
	LogLevel string
	// Target names the target in the annotations (as the user wrote it).
	Target string
	// Progress, when set, is told each phase of the start: "creating", "scheduling",
	// "pulling", "starting", "running".
	Progress func(phase, detail string)
}

// Agent is an agent running in a Job's pod beside the target, or in an ephemeral container of
// the target's pod. Stop removes what can be removed.
type Agent struct {
	cs        kubernetes.Interface
	Namespace string
	Pod       string // the agent's pod, once it runs (the target's pod for an ephemeral agent)
	Port      int    // where the agent listens, on its pod's loopback
	Job       string // the Job's name, "" for an ephemeral agent
	Secret    string // the Secret's name
	Container string // the agent's container
	jobUID    types.UID
}

// NewSessionID returns a random id naming a session's objects: 10 lower-case hex digits.
func NewSessionID() string {
	var b [5]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// AgentJob returns the Job that runs the agent beside the target container of pod: on the
// pod's node, with the node's process list (hostPID) to find the container's process, holding
// only spec's capabilities, and deleted by Kubernetes once it has finished (the agent finishes
// when its client has been gone for the grace period, or at SIGTERM when the Job is deleted).
func AgentJob(spec AgentSpec, session string, pod *corev1.Pod, containerID string) *batchv1.Job {
	name := agentName + "-" + session
	ns := spec.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	labels := agentLabels(spec, session)
	annotations := maps.Clone(spec.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotTarget] = fmt.Sprintf("%s/%s (pod %s/%s)", pod.Namespace, spec.Target, pod.Namespace, pod.Name)
	tolerations := spec.Tolerations
	if tolerations == nil {
		tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	}
	pull := spec.PullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	sc := &corev1.SecurityContext{
		RunAsUser:              ptr(int64(0)),
		ReadOnlyRootFilesystem: ptr(true),
	}
	if spec.Privileged {
		sc.Privileged = ptr(true)
	} else {
		sc.Capabilities = &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: spec.Capabilities}
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(int32(0)),
			TTLSecondsAfterFinished: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{
					NodeName:                      pod.Spec.NodeName,
					HostPID:                       true,
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr(false),
					EnableServiceLinks:            ptr(false),
					TerminationGracePeriodSeconds: ptr(int64(10)),
					NodeSelector:                  spec.NodeSelector,
					Tolerations:                   tolerations,
					Containers: []corev1.Container{{
						Name:            agentName,
						Image:           spec.Image,
						ImagePullPolicy: pull,
						Command:         agentCommand(spec, AgentPort, "--container-id", containerID),
						Env: []corev1.EnvVar{{Name: "DOPPEL_AGENT_SECRET", ValueFrom: &corev1.EnvVarSource{
							SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: secretKey}}}},
						Resources:                spec.Resources,
						SecurityContext:          sc,
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
				},
			},
		},
	}
}

// TargetlessJob returns the Job of a session without a target (--target none): the agent in a
// pod of its own in namespace ns, wherever the scheduler puts it, serving the pod's own network,
// DNS, files (its service account's token) and environment. It needs no privilege at all: it
// runs as nobody with every capability dropped, as Pod Security's "restricted" level asks.
func TargetlessJob(spec AgentSpec, session, ns string) *batchv1.Job {
	job := AgentJob(spec, session, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns}}, "")
	if spec.Namespace == "" {
		job.Namespace = ns
	}
	job.Annotations[AnnotTarget] = "none (namespace " + job.Namespace + ")"
	ps := &job.Spec.Template.Spec
	ps.HostPID = false
	ps.AutomountServiceAccountToken = nil // the namespace's default: the program reads the token
	ps.Tolerations = spec.Tolerations
	c := &ps.Containers[0]
	c.Command = agentCommand(spec, AgentPort, "--self")
	if !spec.Privileged {
		c.SecurityContext = &corev1.SecurityContext{
			RunAsUser:                ptr(int64(65534)),
			RunAsGroup:               ptr(int64(65534)),
			RunAsNonRoot:             ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
	}
	return job
}

func agentLabels(spec AgentSpec, session string) map[string]string {
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = managedBy
	labels[LabelName] = agentName
	labels[LabelSession] = session
	return labels
}

// ContainerID returns the runtime id of a pod's running container (its status's containerID
// without the "containerd://" prefix).
func ContainerID(pod *corev1.Pod, name string) (string, error) {
	for _, s := range pod.Status.ContainerStatuses {
		if s.Name != name {
			continue
		}
		if s.State.Running == nil {
			return "", fmt.Errorf("container %s of pod %s/%s is not running", name, pod.Namespace, pod.Name)
		}
		_, id, ok := strings.Cut(s.ContainerID, "://")
		if !ok || id == "" {
			return "", fmt.Errorf("container %s of pod %s/%s: no container id in its status (%q)", name, pod.Namespace, pod.Name, s.ContainerID)
		}
		return id, nil
	}
	return "", fmt.Errorf("container %s of pod %s/%s has no status yet", name, pod.Namespace, pod.Name)
}

// StartAgent starts the agent beside container of pod and waits until it runs, telling
// spec.Progress each phase. It fails fast with the cluster's reason: forbidden by RBAC or
// admission, an image that cannot be pulled, a pod the node refused, an agent that exited; and
// after timeout. Whatever it created is removed when it fails.
func StartAgent(ctx context.Context, cs kubernetes.Interface, spec AgentSpec, pod *corev1.Pod, container string, timeout time.Duration) (*Agent, error) {
	id, err := ContainerID(pod, container)
	if err != nil {
		return nil, err
	}
	session := NewSessionID()
	job := AgentJob(spec, session, pod, id)
	return startJob(ctx, cs, spec, job, fmt.Sprintf("job %s/%s on node %s", job.Namespace, job.Name, pod.Spec.NodeName), timeout)
}

// StartTargetless starts the agent of a session without a target in namespace ns
// (TargetlessJob) and waits until it runs, as StartAgent does.
func StartTargetless(ctx context.Context, cs kubernetes.Interface, spec AgentSpec, ns string, timeout time.Duration) (*Agent, error) {
	job := TargetlessJob(spec, NewSessionID(), ns)
	return startJob(ctx, cs, spec, job, fmt.Sprintf("job %s/%s", job.Namespace, job.Name), timeout)
}

// startJob creates the agent's Secret and job, gives the Secret to the Job and waits until the
// agent runs.
func startJob(ctx context.Context, cs kubernetes.Interface, spec AgentSpec, job *batchv1.Job, what string, timeout time.Duration) (*Agent, error) {
	progress := spec.Progress
	if progress == nil {
		progress = func(string, string) {}
	}
	a := &Agent{cs: cs, Namespace: job.Namespace, Job: job.Name, Secret: job.Name, Container: agentName, Port: AgentPort}
	progress("creating", what)

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name, Namespace: job.Namespace, Labels: job.Labels, Annotations: job.Annotations},
		Data:       map[string][]byte{secretKey: []byte(hex.EncodeToString(spec.Secret))},
	}
	if _, err := cs.CoreV1().Secrets(job.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, apiError("create the agent's secret", job.Namespace, err)
	}
	created, err := cs.BatchV1().Jobs(job.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		a.deleteSecret()
		return nil, apiError("create the agent's job", job.Namespace, err)
	}
	a.jobUID = created.UID
	// The Secret belongs to the Job: Kubernetes deletes it with the Job, also when doppel
	// cannot.
	owner := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"batch/v1","kind":"Job","name":%q,"uid":%q}]}}`, created.Name, created.UID)
	if _, err := cs.CoreV1().Secrets(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, []byte(owner), metav1.PatchOptions{}); err != nil {
		a.Stop()
		return nil, apiError("give the agent's secret to its job", job.Namespace, err)
	}

	if err := await(ctx, timeout, progress, a.lookJob); err != nil {
		a.Stop()
		return nil, err
	}
	return a, nil
}

// EphemeralAgent returns the ephemeral container that runs the agent in pod, in the process
// namespace of its target container (whose first process is then pid 1) and in the pod's
// network, listening on port of the pod's loopback. It adds only spec's capabilities to the
// container runtime's default set and runs as the pod's user.
func EphemeralAgent(spec AgentSpec, session string, port int, container string) corev1.EphemeralContainer {
	name := agentName + "-" + session
	pull := spec.PullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	var sc *corev1.SecurityContext
	switch {
	case spec.Privileged:
		sc = &corev1.SecurityContext{Privileged: ptr(true)}
	case len(spec.Capabilities) > 0:
		sc = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: spec.Capabilities}}
	}
	return corev1.EphemeralContainer{
		TargetContainerName: container,
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:            name,
			Image:           spec.Image,
			ImagePullPolicy: pull,
			Command:         agentCommand(spec, port, "--pid", "1"),
			Env: []corev1.EnvVar{{Name: "DOPPEL_AGENT_SECRET", ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: secretKey}}}},
			SecurityContext:          sc,
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		},
	}
}

// agentCommand is the agent's command line: its loopback port, its target's flags.
func agentCommand(spec AgentSpec, port int, target ...string) []string {
	grace := spec.Grace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	level := spec.LogLevel
	if level == "" {
		level = "warn"
	}
	cmd := append([]string{"/doppel", "agent"}, target...)
	return append(cmd, "--listen", "127.0.0.1:"+strconv.Itoa(port), "--grace", grace.String(), "--log-level", level,
		"--stream-window", strconv.Itoa(wire.PortForwardStreamWindow))
}

// StartEphemeral starts the agent as an ephemeral container of pod beside container and waits
// until it runs, as StartAgent does. The container stays in the pod's spec after the session
// (Kubernetes cannot remove ephemeral containers); its Secret belongs to the pod and is deleted
// by Stop.
func StartEphemeral(ctx context.Context, cs kubernetes.Interface, spec AgentSpec, pod *corev1.Pod, container string, timeout time.Duration) (*Agent, error) {
	progress := spec.Progress
	if progress == nil {
		progress = func(string, string) {}
	}
	session := NewSessionID()
	// The agent shares the pod's network: a port above the usual service ports, picked by the
	// session id, keeps clear of the target's own listeners.
	port := 20000 + int(sessionNumber(session)%40000)
	ec := EphemeralAgent(spec, session, port, container)
	a := &Agent{cs: cs, Namespace: pod.Namespace, Pod: pod.Name, Port: port, Secret: ec.Name, Container: ec.Name}
	progress("creating", fmt.Sprintf("ephemeral container %s in pod %s/%s", ec.Name, pod.Namespace, pod.Name))

	labels := agentLabels(spec, session)
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: ec.Name, Namespace: pod.Namespace, Labels: labels, Annotations: spec.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}},
		Data: map[string][]byte{secretKey: []byte(hex.EncodeToString(spec.Secret))},
	}
	if _, err := cs.CoreV1().Secrets(pod.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, apiError("create the agent's secret", pod.Namespace, err)
	}
	p := pod.DeepCopy()
	p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, ec)
	if _, err := cs.CoreV1().Pods(pod.Namespace).UpdateEphemeralContainers(ctx, pod.Name, p, metav1.UpdateOptions{}); err != nil {
		a.deleteSecret()
		return nil, apiError("add the agent's ephemeral container to pod "+pod.Name, pod.Namespace, err)
	}

	if err := await(ctx, timeout, progress, a.lookEphemeral); err != nil {
		a.deleteSecret()
		return nil, err
	}
	return a, nil
}

// sessionNumber is a session id's hex digits as a number.
func sessionNumber(session string) uint64 {
	n, _ := strconv.ParseUint(session, 16, 64)
	return n
}

// startError explains a start that failed with err: the cluster's reason, the caller's
// cancellation (parent), or the start timeout (ctx).
func startError(parent, ctx context.Context, timeout time.Duration, err error) error {
	switch {
	case errors.Is(err, errAgentFailed):
		return err
	case parent.Err() != nil:
		return fmt.Errorf("start the agent: %w (%v)", context.Cause(parent), err)
	case ctx.Err() != nil:
		return fmt.Errorf("the agent did not start within %v (%v); --agent-timeout waits longer", timeout, err)
	}
	return err
}

// errAgentFailed marks a start that failed for a reason the cluster gave.
var errAgentFailed = errors.New("the agent failed to start")

// await calls look every 200 ms until the agent runs, for at most timeout, telling progress
// each new phase. It fails with look's error, or, once the time is up or parent has ended,
// with the last phase it saw (startError says which).
func await(parent context.Context, timeout time.Duration, progress func(string, string), look func(context.Context) (done bool, phase, detail string, err error)) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	last, reported := "no status yet", ""
	for {
		done, phase, detail, err := look(ctx)
		if err != nil {
			if ctx.Err() != nil {
				err = errors.New(last)
			}
			return startError(parent, ctx, timeout, err)
		}
		if phase+detail != reported {
			reported = phase + detail
			last = strings.TrimSpace(phase + " " + detail)
			progress(phase, detail)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return startError(parent, ctx, timeout, errors.New(last))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// lookJob reads where the Job's agent is: no pod yet (or the reason the Job made none), or its
// pod's state, with the pulling phase and the agent's log on a failure.
func (a *Agent) lookJob(ctx context.Context) (done bool, phase, detail string, err error) {
	selector := "batch.kubernetes.io/controller-uid=" + string(a.jobUID)
	pods, err := a.cs.CoreV1().Pods(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return false, "", "", apiError("list the agent's pod", a.Namespace, err)
	}
	if len(pods.Items) == 0 {
		if msg := a.jobFailure(ctx); msg != "" {
			if strings.Contains(msg, "PodSecurity") {
				msg += " (the agent's pod needs the privileged level; --ephemeral needs less; docs/KUBERNETES.md)"
			}
			return false, "", "", fmt.Errorf("%w: the job could not create its pod: %s", errAgentFailed, msg)
		}
		return false, "scheduling", "", nil
	}
	p := &pods.Items[0]
	a.Pod = p.Name
	if done, phase, detail, err = a.state(p); err != nil {
		return false, "", "", a.withLog(ctx, err)
	}
	switch {
	case phase == "starting" && a.pulling(ctx, p):
		phase, detail = "pulling", p.Spec.Containers[0].Image
	case phase == "running":
		detail = "pod " + p.Name
	}
	return done, phase, detail, nil
}

// lookEphemeral reads where the ephemeral agent is in its pod's status.
func (a *Agent) lookEphemeral(ctx context.Context) (done bool, phase, detail string, err error) {
	p, err := a.cs.CoreV1().Pods(a.Namespace).Get(ctx, a.Pod, metav1.GetOptions{})
	if err != nil {
		return false, "", "", apiError("read pod "+a.Pod, a.Namespace, err)
	}
	if done, phase, detail, err = a.state(p); err != nil {
		return false, "", "", a.withLog(ctx, err)
	}
	if done {
		detail = "ephemeral container " + a.Container
	}
	return done, phase, detail, nil
}

// state reads where the agent is in the status of p, its pod (the target's pod for an
// ephemeral agent).
func (a *Agent) state(p *corev1.Pod) (done bool, phase, detail string, err error) {
	if a.Job != "" {
		return agentPodState(p)
	}
	for _, st := range p.Status.EphemeralContainerStatuses {
		if st.Name == a.Container {
			return containerState(st)
		}
	}
	return false, "starting", "", nil
}

// withLog adds the tail of the agent's log to a failure.
func (a *Agent) withLog(ctx context.Context, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	rc, lerr := a.cs.CoreV1().Pods(a.Namespace).GetLogs(a.Pod, &corev1.PodLogOptions{Container: a.Container, TailLines: ptr(int64(20))}).Stream(ctx)
	if lerr != nil {
		return err
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 8<<10))
	if logs := bytes.TrimSpace(b); len(logs) > 0 {
		return fmt.Errorf("%w\nagent log:\n%s", err, logs)
	}
	return err
}

// agentPodState reads where the agent's pod is: running (done), a phase to report, or a
// failure with the cluster's reason.
func agentPodState(p *corev1.Pod) (done bool, phase, detail string, err error) {
	if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
		msg := p.Status.Message
		if msg == "" {
			msg = p.Status.Reason
		}
		for _, s := range p.Status.ContainerStatuses {
			if t := s.State.Terminated; t != nil {
				msg = strings.TrimSpace(fmt.Sprintf("exited with status %d %s %s", t.ExitCode, t.Reason, t.Message))
			}
		}
		return false, "", "", fmt.Errorf("%w: agent pod %s/%s %s: %s", errAgentFailed, p.Namespace, p.Name, strings.ToLower(string(p.Status.Phase)), msg)
	}
	if p.Spec.NodeName == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				return false, "", "", fmt.Errorf("%w: agent pod %s/%s is unschedulable: %s", errAgentFailed, p.Namespace, p.Name, c.Message)
			}
		}
		return false, "scheduling", "", nil
	}
	if len(p.Status.ContainerStatuses) > 0 {
		return containerState(p.Status.ContainerStatuses[0])
	}
	return false, "starting", "", nil
}

// containerState reads where the agent's container is, as agentPodState.
func containerState(s corev1.ContainerStatus) (done bool, phase, detail string, err error) {
	switch {
	case s.State.Running != nil:
		return true, "running", "", nil
	case s.State.Terminated != nil:
		t := s.State.Terminated
		msg := fmt.Sprintf("the agent exited with status %d", t.ExitCode)
		if t.Reason != "" {
			msg += " (" + t.Reason + ")"
		}
		if m := strings.TrimSpace(t.Message); m != "" {
			msg += ": " + m
		}
		return false, "", "", fmt.Errorf("%w: %s", errAgentFailed, msg)
	case s.State.Waiting != nil:
		w := s.State.Waiting
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable":
			return false, "", "", fmt.Errorf("%w: cannot pull the agent image %s: %s: %s (--agent-image names another)", errAgentFailed, s.Image, w.Reason, w.Message)
		case "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff", "PreCreateHookError", "PreStartHookError":
			return false, "", "", fmt.Errorf("%w: %s: %s", errAgentFailed, w.Reason, w.Message)
		case "", "ContainerCreating", "PodInitializing":
			return false, "starting", "", nil
		}
		return false, "starting", w.Reason, nil
	}
	return false, "starting", "", nil
}

// jobFailure reads why the Job made no pod: its FailedCreate events (admission, quota,
// PodSecurity) or its Failed condition.
func (a *Agent) jobFailure(ctx context.Context) string {
	j, err := a.cs.BatchV1().Jobs(a.Namespace).Get(ctx, a.Job, metav1.GetOptions{})
	if err == nil {
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
				return c.Reason + ": " + c.Message
			}
		}
	}
	evs, err := a.cs.CoreV1().Events(a.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.uid=" + string(a.jobUID) + ",reason=FailedCreate"})
	if err == nil && len(evs.Items) > 0 {
		return evs.Items[len(evs.Items)-1].Message
	}
	return ""
}

// pulling says whether the kubelet's last word on the pod is that it pulls an image.
func (a *Agent) pulling(ctx context.Context, p *corev1.Pod) bool {
	evs, err := a.cs.CoreV1().Events(a.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(p.UID)})
	if err != nil || len(evs.Items) == 0 {
		return false
	}
	last := evs.Items[0]
	for _, e := range evs.Items[1:] {
		if e.LastTimestamp.After(last.LastTimestamp.Time) || e.EventTime.After(last.EventTime.Time) {
			last = e
		}
	}
	return last.Reason == "Pulling"
}

// Failed returns why the agent's pod stopped, "" while it runs (or cannot be read).
func (a *Agent) Failed(ctx context.Context) string {
	p, err := a.cs.CoreV1().Pods(a.Namespace).Get(ctx, a.Pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "its pod " + a.Namespace + "/" + a.Pod + " was deleted"
	}
	if err != nil {
		return ""
	}
	if _, _, _, err := a.state(p); err != nil {
		return err.Error()
	}
	return ""
}

// Stop deletes the agent's Job (and with it its pod and Secret); the agent gets SIGTERM and
// removes its rules. It does not wait for the pod to be gone.
func (a *Agent) Stop() error {
	if a.Job == "" {
		// An ephemeral container cannot be removed: the agent exits by itself once its client
		// has been gone for the grace period, and its Secret goes now.
		a.deleteSecret()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	err := a.cs.BatchV1().Jobs(a.Namespace).Delete(ctx, a.Job, metav1.DeleteOptions{PropagationPolicy: &bg})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	a.deleteSecret()
	if err != nil {
		return fmt.Errorf("delete the agent's job %s/%s: %w", a.Namespace, a.Job, err)
	}
	return nil
}

func (a *Agent) deleteSecret() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.cs.CoreV1().Secrets(a.Namespace).Delete(ctx, a.Secret, metav1.DeleteOptions{})
}

// apiError explains a refused API call: for a forbidden one, which permission is missing.
func apiError(what, ns string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s in namespace %s: forbidden: %w (docs/KUBERNETES.md lists the role doppel needs)", what, ns, err)
	}
	return fmt.Errorf("%s in namespace %s: %w", what, ns, err)
}

func ptr[T any](v T) *T { return &v }
