package kube

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	testImage = "registry.example.com/doppel-agent:test"
	// testJobUID is the uid the fake API server gives the agent's Job.
	testJobUID = types.UID("0f1e2d3c-job")
	// testAgentLog is the agent's log as the fake API server returns it.
	testAgentLog = "agent: open /proc/4242/ns/net: permission denied"
)

var (
	podsGVR = corev1.SchemeGroupVersion.WithResource("pods")
	jobsGVR = batchv1.SchemeGroupVersion.WithResource("jobs")
	jobGVK  = batchv1.SchemeGroupVersion.WithKind("Job")
)

// targetPod is the agent tests' target: container "app" of pod shop/nginx-abc, running on
// node-1.
func targetPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-abc", Namespace: "shop", UID: "pod-uid"},
		Spec:       corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "app", Image: "nginx"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{
			Name: "app", ContainerID: "containerd://0123abcd", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
}

func secretEnv(name string) []corev1.EnvVar {
	return []corev1.EnvVar{{Name: "DOPPEL_AGENT_SECRET", ValueFrom: &corev1.EnvVarSource{
		SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: "secret"}}}}
}

// wantJob is AgentJob's Job for session "s1" beside targetPod with a spec that sets only the
// image, the target and two capabilities.
func wantJob() *batchv1.Job {
	meta := func() metav1.ObjectMeta {
		return metav1.ObjectMeta{
			Labels: map[string]string{
				"app.kubernetes.io/managed-by": "doppel",
				"app.kubernetes.io/name":       "doppel-agent",
				"doppel.dev/session":           "s1",
			},
			Annotations: map[string]string{"doppel.dev/target": "shop/deployment/nginx (pod shop/nginx-abc)"},
		}
	}
	job := &batchv1.Job{
		ObjectMeta: meta(),
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(int32(0)),
			TTLSecondsAfterFinished: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: meta(),
				Spec: corev1.PodSpec{
					NodeName:                      "node-1",
					HostPID:                       true,
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr(false),
					EnableServiceLinks:            ptr(false),
					TerminationGracePeriodSeconds: ptr(int64(10)),
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{
						Name:            "doppel-agent",
						Image:           testImage,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Command: []string{"/doppel", "agent", "--container-id", "0123abcd", "--listen", "127.0.0.1:4711",
							"--grace", "5s", "--log-level", "warn", "--stream-window", "16777216"},
						Env: secretEnv("doppel-agent-s1"),
						SecurityContext: &corev1.SecurityContext{
							RunAsUser:              ptr(int64(0)),
							ReadOnlyRootFilesystem: ptr(true),
							Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE"}},
						},
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
					}},
				},
			},
		},
	}
	job.Name, job.Namespace = "doppel-agent-s1", "shop"
	return job
}

func TestAgentJob(t *testing.T) {
	base := AgentSpec{Image: testImage, Target: "deployment/nginx", Capabilities: []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE"}}
	resources := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
	}
	tolerations := []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	for _, tc := range []struct {
		name string
		spec func(*AgentSpec)
		want func(*batchv1.Job)
	}{
		{name: "defaults", spec: func(*AgentSpec) {}, want: func(*batchv1.Job) {}},
		{
			name: "user settings",
			spec: func(s *AgentSpec) {
				s.Labels = map[string]string{"team": "orders"}
				s.Annotations = map[string]string{"owner": "orders@example.com"}
				s.NodeSelector = map[string]string{"disk": "ssd"}
				s.Tolerations = tolerations
				s.Resources = resources
				s.PullPolicy = corev1.PullAlways
				s.Grace = 30 * time.Second
				s.LogLevel = "debug"
			},
			want: func(j *batchv1.Job) {
				for _, m := range []*metav1.ObjectMeta{&j.ObjectMeta, &j.Spec.Template.ObjectMeta} {
					m.Labels["team"] = "orders"
					m.Annotations["owner"] = "orders@example.com"
				}
				ps := &j.Spec.Template.Spec
				ps.NodeSelector = map[string]string{"disk": "ssd"}
				ps.Tolerations = tolerations
				c := &ps.Containers[0]
				c.Resources = resources
				c.ImagePullPolicy = corev1.PullAlways
				c.Command = []string{"/doppel", "agent", "--container-id", "0123abcd", "--listen", "127.0.0.1:4711",
					"--grace", "30s", "--log-level", "debug", "--stream-window", "16777216"}
			},
		},
		{
			// The user's labels cannot take doppel's own.
			name: "user labels overridden",
			spec: func(s *AgentSpec) {
				s.Labels = map[string]string{"app.kubernetes.io/managed-by": "helm", "doppel.dev/session": "x"}
			},
			want: func(*batchv1.Job) {},
		},
		{
			name: "privileged",
			spec: func(s *AgentSpec) { s.Privileged = true },
			want: func(j *batchv1.Job) {
				j.Spec.Template.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{
					RunAsUser: ptr(int64(0)), ReadOnlyRootFilesystem: ptr(true), Privileged: ptr(true)}
			},
		},
		{
			name: "no capabilities",
			spec: func(s *AgentSpec) { s.Capabilities = nil },
			want: func(j *batchv1.Job) {
				j.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add = nil
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := base
			tc.spec(&spec)
			userLabels := fmt.Sprint(spec.Labels)
			want := wantJob()
			tc.want(want)
			got := AgentJob(spec, "s1", targetPod(), "0123abcd")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("AgentJob (-want +got):\n%s", diff)
			}
			if fmt.Sprint(spec.Labels) != userLabels {
				t.Errorf("AgentJob changed the spec's labels to %v", spec.Labels)
			}
		})
	}
}

// TestAgentJobNamespace checks that spec.Namespace moves the Job and its Secret's name goes
// with it, while the pod stays on the target's node.
func TestAgentJobNamespace(t *testing.T) {
	got := AgentJob(AgentSpec{Image: testImage, Namespace: "doppel"}, "s1", targetPod(), "0123abcd")
	ps := got.Spec.Template.Spec
	if got.Namespace != "doppel" || got.Name != "doppel-agent-s1" || ps.NodeName != "node-1" ||
		ps.Containers[0].Env[0].ValueFrom.SecretKeyRef.Name != "doppel-agent-s1" {
		t.Errorf("AgentJob in namespace doppel = job %s/%s on node %q, secret %q", got.Namespace, got.Name, ps.NodeName,
			ps.Containers[0].Env[0].ValueFrom.SecretKeyRef.Name)
	}
}

func TestEphemeralAgent(t *testing.T) {
	want := func(sc *corev1.SecurityContext, pull corev1.PullPolicy, grace, level string) corev1.EphemeralContainer {
		return corev1.EphemeralContainer{
			TargetContainerName: "app",
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{
				Name:            "doppel-agent-s1",
				Image:           testImage,
				ImagePullPolicy: pull,
				Command: []string{"/doppel", "agent", "--pid", "1", "--listen", "127.0.0.1:23456",
					"--grace", grace, "--log-level", level, "--stream-window", "16777216"},
				Env:                      secretEnv("doppel-agent-s1"),
				SecurityContext:          sc,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			},
		}
	}
	for _, tc := range []struct {
		name string
		spec AgentSpec
		want corev1.EphemeralContainer
	}{
		{
			name: "no capabilities",
			spec: AgentSpec{Image: testImage},
			want: want(nil, corev1.PullIfNotPresent, "5s", "warn"),
		},
		{
			// Only added: the runtime's default set stays, nothing is dropped.
			name: "capabilities",
			spec: AgentSpec{Image: testImage, Capabilities: []corev1.Capability{"NET_ADMIN"}},
			want: want(&corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}},
				corev1.PullIfNotPresent, "5s", "warn"),
		},
		{
			name: "privileged",
			spec: AgentSpec{Image: testImage, Privileged: true, Capabilities: []corev1.Capability{"NET_ADMIN"}},
			want: want(&corev1.SecurityContext{Privileged: ptr(true)}, corev1.PullIfNotPresent, "5s", "warn"),
		},
		{
			name: "settings",
			spec: AgentSpec{Image: testImage, PullPolicy: corev1.PullNever, Grace: time.Minute, LogLevel: "debug"},
			want: want(nil, corev1.PullNever, "1m0s", "debug"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := EphemeralAgent(tc.spec, "s1", 23456, "app")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("EphemeralAgent (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContainerID(t *testing.T) {
	status := func(s corev1.ContainerStatus) *corev1.Pod {
		p := targetPod()
		p.Status.ContainerStatuses = []corev1.ContainerStatus{s}
		return p
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		id     string
		errHas string
	}{
		{name: "containerd", pod: targetPod(), id: "0123abcd"},
		{name: "cri-o", pod: status(corev1.ContainerStatus{Name: "app", ContainerID: "cri-o://feed", State: running}), id: "feed"},
		{name: "not running", pod: status(corev1.ContainerStatus{Name: "app", ContainerID: "containerd://feed",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}), errHas: "is not running"},
		{name: "no id", pod: status(corev1.ContainerStatus{Name: "app", State: running}), errHas: "no container id"},
		{name: "no status", pod: status(corev1.ContainerStatus{Name: "sidecar", State: running}), errHas: "has no status yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ContainerID(tc.pod, "app")
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) || !strings.Contains(err.Error(), "shop/nginx-abc") {
					t.Errorf("ContainerID = %q, %v; want an error about pod shop/nginx-abc with %q", id, err, tc.errHas)
				}
				return
			}
			if err != nil || id != tc.id {
				t.Errorf("ContainerID = %q, %v; want %q", id, err, tc.id)
			}
		})
	}
}

func waitingStatus(reason, message string) corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "doppel-agent", Image: testImage,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}}}
}

func runningStatus() corev1.PodStatus {
	return corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "doppel-agent", Image: testImage,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}
}

func terminatedStatus(phase corev1.PodPhase, code int32, reason, message string) corev1.PodStatus {
	return corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{Name: "doppel-agent", Image: testImage,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: message}}}}}
}

func TestAgentPodState(t *testing.T) {
	type row struct {
		name          string
		node          string // the pod's node, "node-1" unless "-"
		status        corev1.PodStatus
		done          bool
		phase, detail string
		errHas        []string // every one in the error
	}
	rows := []row{
		{name: "running", status: runningStatus(), done: true, phase: "running"},
		{name: "not scheduled", node: "-", status: corev1.PodStatus{Phase: corev1.PodPending}, phase: "scheduling"},
		{name: "no container status", status: corev1.PodStatus{Phase: corev1.PodPending}, phase: "starting"},
		{name: "container creating", status: waitingStatus("ContainerCreating", ""), phase: "starting"},
		{name: "pod initializing", status: waitingStatus("PodInitializing", ""), phase: "starting"},
		{name: "other wait", status: waitingStatus("SandboxChanged", "pod sandbox changed"), phase: "starting", detail: "SandboxChanged"},
		{
			name: "unschedulable", node: "-",
			status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled,
				Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: "0/3 nodes are available: 3 Insufficient cpu."}}},
			errHas: []string{"agent pod shop/doppel-agent-s1-x7k2p is unschedulable", "0/3 nodes are available: 3 Insufficient cpu."},
		},
		{
			name: "terminated while running", status: terminatedStatus(corev1.PodRunning, 2, "Error", "no such container\n"),
			errHas: []string{"the agent exited with status 2 (Error): no such container"},
		},
		{
			name: "pod failed, agent exited", status: terminatedStatus(corev1.PodFailed, 137, "OOMKilled", ""),
			errHas: []string{"agent pod shop/doppel-agent-s1-x7k2p failed: exited with status 137 OOMKilled"},
		},
		{
			name:   "pod rejected by the node",
			status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "OutOfcpu", Message: "Pod Node didn't have enough resource: cpu"},
			errHas: []string{"failed: Pod Node didn't have enough resource: cpu"},
		},
		{
			name:   "pod failed, reason only",
			status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: "NodeAffinity"},
			errHas: []string{"agent pod shop/doppel-agent-s1-x7k2p failed: NodeAffinity"},
		},
		{
			name: "pod succeeded", status: terminatedStatus(corev1.PodSucceeded, 0, "Completed", ""),
			errHas: []string{"succeeded: exited with status 0 Completed"},
		},
	}
	for _, reason := range []string{"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"} {
		rows = append(rows, row{name: reason, status: waitingStatus(reason, "manifest unknown"),
			errHas: []string{"cannot pull the agent image " + testImage, reason, "manifest unknown", "--agent-image"}})
	}
	for _, reason := range []string{"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "CrashLoopBackOff",
		"PreCreateHookError", "PreStartHookError"} {
		rows = append(rows, row{name: reason, status: waitingStatus(reason, `secret "doppel-agent-s1" not found`),
			errHas: []string{reason + `: secret "doppel-agent-s1" not found`}})
	}
	for _, tc := range rows {
		t.Run(tc.name, func(t *testing.T) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "doppel-agent-s1-x7k2p", Namespace: "shop"},
				Spec: corev1.PodSpec{NodeName: "node-1"}, Status: tc.status}
			if tc.node == "-" {
				p.Spec.NodeName = ""
			}
			done, phase, detail, err := agentPodState(p)
			if len(tc.errHas) > 0 {
				if err == nil {
					t.Fatalf("agentPodState = %v, %q, %q, nil; want an error", done, phase, detail)
				}
				if !errors.Is(err, errAgentFailed) {
					t.Errorf("agentPodState error %q does not wrap errAgentFailed", err)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("agentPodState error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil || done != tc.done || phase != tc.phase || detail != tc.detail {
				t.Errorf("agentPodState = %v, %q, %q, %v; want %v, %q, %q", done, phase, detail, err, tc.done, tc.phase, tc.detail)
			}
		})
	}
}

// fakeCluster is a fake API server holding targetPod and objs. Unlike the plain fake it
// gives a created Job the uid testJobUID, selects events by field, and answers a log request
// with testAgentLog. Before each list of pods it runs the next of steps, which may change the
// cluster as the Job controller and the kubelet would.
func fakeCluster(steps []func(*fake.Clientset), objs ...runtime.Object) *fake.Clientset {
	cs := fake.NewClientset(append([]runtime.Object{targetPod()}, objs...)...)
	cs.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		a.(k8stesting.CreateAction).GetObject().(*batchv1.Job).UID = testJobUID
		return false, nil, nil
	})
	cs.PrependReactor("list", "events", func(a k8stesting.Action) (bool, runtime.Object, error) {
		la := a.(k8stesting.ListActionImpl)
		obj, err := cs.Tracker().List(la.GetResource(), la.GetKind(), la.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		list := obj.(*corev1.EventList)
		sel := la.GetListRestrictions().Fields
		list.Items = slices.DeleteFunc(list.Items, func(e corev1.Event) bool {
			return !sel.Matches(fields.Set{"involvedObject.uid": string(e.InvolvedObject.UID), "reason": e.Reason})
		})
		return true, list, nil
	})
	cs.PrependReactor("get", "pods/log", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &runtime.Unknown{Raw: []byte(testAgentLog + "\n")}, nil
	})
	calls := 0
	cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if calls < len(steps) {
			steps[calls](cs)
		}
		calls++
		return false, nil, nil
	})
	return cs
}

// agentJobIn returns the agent's Job in the fake cluster, from its tracker (reactors may not
// call the clientset).
func agentJobIn(t *testing.T, cs *fake.Clientset) *batchv1.Job {
	obj, err := cs.Tracker().List(jobsGVR, jobGVK, "shop")
	if err != nil {
		t.Fatal(err)
	}
	jobs := obj.(*batchv1.JobList).Items
	if len(jobs) != 1 {
		t.Fatalf("%d jobs in namespace shop, want the agent's", len(jobs))
	}
	return &jobs[0]
}

// agentPodName is the name the fake Job controller gives the agent's pod.
func agentPodName(job *batchv1.Job) string { return job.Name + "-x7k2p" }

// setAgentPod is a step that makes the agent Job's pod, or updates it, with status, as the
// Job controller and the kubelet would.
func setAgentPod(t *testing.T, status corev1.PodStatus) func(*fake.Clientset) {
	return func(cs *fake.Clientset) {
		job := agentJobIn(t, cs)
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: agentPodName(job), Namespace: job.Namespace, UID: "agent-pod-uid",
				Labels: map[string]string{"batch.kubernetes.io/controller-uid": string(job.UID), "batch.kubernetes.io/job-name": job.Name}},
			Spec:   *job.Spec.Template.Spec.DeepCopy(),
			Status: status,
		}
		err := cs.Tracker().Update(podsGVR, p, p.Namespace)
		if apierrors.IsNotFound(err) {
			err = cs.Tracker().Create(podsGVR, p, p.Namespace)
		}
		if err != nil {
			t.Error(err)
		}
	}
}

// addObject is a step that adds obj to the cluster.
func addObject(t *testing.T, obj func(job *batchv1.Job) runtime.Object) func(*fake.Clientset) {
	return func(cs *fake.Clientset) {
		if err := cs.Tracker().Add(obj(agentJobIn(t, cs))); err != nil {
			t.Error(err)
		}
	}
}

// decoys are pods and events of other Jobs that StartAgent must not take for its own.
func decoys() []runtime.Object {
	return []runtime.Object{
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "doppel-agent-other-abcde", Namespace: "shop", UID: "other-pod-uid",
			Labels: map[string]string{"batch.kubernetes.io/controller-uid": "other-job-uid"}},
			Spec: corev1.PodSpec{NodeName: "node-1"}, Status: runningStatus()},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "doppel-agent-elsewhere", Namespace: "elsewhere", UID: "elsewhere-pod-uid",
			Labels: map[string]string{"batch.kubernetes.io/controller-uid": string(testJobUID)}},
			Spec: corev1.PodSpec{NodeName: "node-1"}, Status: runningStatus()},
		&corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "other.failed", Namespace: "shop"},
			InvolvedObject: corev1.ObjectReference{Kind: "Job", UID: "other-job-uid"}, Reason: "FailedCreate", Message: "another job's failure"},
	}
}

func TestStartAgent(t *testing.T) {
	var steps []func(*fake.Clientset)
	steps = append(steps,
		// The Job has no pod yet.
		func(*fake.Clientset) {},
		// Its pod is on the node, which pulls the image.
		func(cs *fake.Clientset) {
			setAgentPod(t, waitingStatus("ContainerCreating", ""))(cs)
			addObject(t, func(job *batchv1.Job) runtime.Object {
				return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "pulling", Namespace: "shop"},
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", UID: "agent-pod-uid"}, Reason: "Pulling",
					LastTimestamp: metav1.Now(), Message: "Pulling image " + testImage}
			})(cs)
		},
		// The agent runs.
		setAgentPod(t, runningStatus()),
	)
	cs := fakeCluster(steps, decoys()...)
	var progress []string
	spec := AgentSpec{Image: testImage, Target: "deployment/nginx", Secret: []byte{0xca, 0xfe},
		Labels:   map[string]string{"team": "orders"},
		Progress: func(phase, detail string) { progress = append(progress, strings.TrimSpace(phase+" "+detail)) }}
	a, err := StartAgent(context.Background(), cs, spec, targetPod(), "app", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	job := agentJobIn(t, cs)
	if !regexp.MustCompile(`^doppel-agent-[0-9a-f]{10}$`).MatchString(job.Name) {
		t.Errorf("agent job %q, want doppel-agent-<10 hex digits>", job.Name)
	}
	session := job.Labels["doppel.dev/session"]
	if want := "doppel-agent-" + session; job.Name != want {
		t.Errorf("agent job %s has session label %q", job.Name, session)
	}
	wantAgent := Agent{cs: cs, Namespace: "shop", Pod: agentPodName(job), Port: 4711, Job: job.Name, Secret: job.Name,
		Container: "doppel-agent", jobUID: testJobUID}
	if diff := cmp.Diff(wantAgent, *a, cmp.AllowUnexported(Agent{}), cmp.Comparer(func(x, y *fake.Clientset) bool { return x == y })); diff != "" {
		t.Errorf("StartAgent (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(AgentJob(spec, session, targetPod(), "0123abcd").Spec, job.Spec); diff != "" {
		t.Errorf("agent job spec (-want +got):\n%s", diff)
	}

	secret, err := cs.CoreV1().Secrets("shop").Get(context.Background(), job.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantOwners := []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: testJobUID}}
	if diff := cmp.Diff(wantOwners, secret.OwnerReferences); diff != "" {
		t.Errorf("the secret's owners (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string][]byte{"secret": []byte("cafe")}, secret.Data); diff != "" {
		t.Errorf("the secret's data (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(job.Labels, secret.Labels); diff != "" {
		t.Errorf("the secret's labels, against the job's (-want +got):\n%s", diff)
	}

	wantProgress := []string{
		"creating job shop/" + job.Name + " on node node-1",
		"scheduling",
		"pulling " + testImage,
		"running pod " + agentPodName(job),
	}
	if diff := cmp.Diff(wantProgress, progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
}

func TestStartAgentFails(t *testing.T) {
	forbidden := func(resource string) func(*fake.Clientset) {
		return func(cs *fake.Clientset) {
			cs.PrependReactor("create", resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
				gr := a.GetResource().GroupResource()
				return true, nil, apierrors.NewForbidden(gr, "", fmt.Errorf(`User "dev" cannot create resource %q in the namespace "shop"`, gr.Resource))
			})
		}
	}
	failedCreate := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "agent.failed", Namespace: "shop"},
		InvolvedObject: corev1.ObjectReference{Kind: "Job", UID: testJobUID}, Reason: "FailedCreate",
		Message: `Error creating: pods "doppel-agent-x" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true)`}
	for _, tc := range []struct {
		name    string
		react   func(*fake.Clientset) // adds reactors
		objs    []runtime.Object
		steps   []func(*fake.Clientset)
		timeout time.Duration
		errHas  []string
		errNot  string
		noJob   bool // the job was never made
	}{
		{
			name:   "secret forbidden",
			react:  forbidden("secrets"),
			errHas: []string{"create the agent's secret in namespace shop: forbidden", "docs/KUBERNETES.md"},
			noJob:  true,
		},
		{
			name:   "job forbidden",
			react:  forbidden("jobs"),
			errHas: []string{"create the agent's job in namespace shop: forbidden", `cannot create resource "jobs"`, "docs/KUBERNETES.md"},
			noJob:  true,
		},
		{
			name:   "image pull",
			steps:  []func(*fake.Clientset){setAgentPod(t, waitingStatus("ErrImagePull", "manifest unknown"))},
			errHas: []string{"cannot pull the agent image " + testImage, "ErrImagePull: manifest unknown", "--agent-image"},
		},
		{
			name:   "agent exits",
			steps:  []func(*fake.Clientset){setAgentPod(t, terminatedStatus(corev1.PodFailed, 1, "Error", ""))},
			errHas: []string{"exited with status 1 Error", "agent log:\n" + testAgentLog},
		},
		{
			name:   "job cannot make its pod",
			objs:   []runtime.Object{failedCreate},
			errHas: []string{"the job could not create its pod", failedCreate.Message},
			errNot: "another job's failure",
		},
		{
			name: "job failed",
			steps: []func(*fake.Clientset){func(cs *fake.Clientset) {
				job := agentJobIn(t, cs)
				job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue,
					Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}}
				if err := cs.Tracker().Update(jobsGVR, job, job.Namespace); err != nil {
					t.Error(err)
				}
			}},
			errHas: []string{"the job could not create its pod: BackoffLimitExceeded: Job has reached the specified backoff limit"},
		},
		{
			name:    "timeout",
			steps:   []func(*fake.Clientset){setAgentPod(t, waitingStatus("ContainerCreating", ""))},
			timeout: time.Second,
			errHas:  []string{"the agent did not start within 1s (starting)", "--agent-timeout waits longer"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := fakeCluster(tc.steps, append(decoys(), tc.objs...)...)
			if tc.react != nil {
				tc.react(cs)
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			start := time.Now()
			a, err := StartAgent(context.Background(), cs, AgentSpec{Image: testImage, Target: "deployment/nginx"}, targetPod(), "app", timeout)
			if err == nil {
				t.Fatalf("StartAgent = agent in pod %s, want an error", a.Pod)
			}
			if took := time.Since(start); took > timeout+time.Second {
				t.Errorf("StartAgent failed after %v, with a timeout of %v", took, timeout)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("StartAgent error %q does not mention %q", err, s)
				}
			}
			if tc.errNot != "" && strings.Contains(err.Error(), tc.errNot) {
				t.Errorf("StartAgent error %q mentions %q", err, tc.errNot)
			}

			// Nothing is left, and only what was made was deleted.
			managed := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=doppel"}
			jobs, err := cs.BatchV1().Jobs("").List(context.Background(), managed)
			if err != nil {
				t.Fatal(err)
			}
			secrets, err := cs.CoreV1().Secrets("").List(context.Background(), managed)
			if err != nil {
				t.Fatal(err)
			}
			if len(jobs.Items) > 0 || len(secrets.Items) > 0 {
				t.Errorf("left %d jobs and %d secrets", len(jobs.Items), len(secrets.Items))
			}
			for _, act := range cs.Actions() {
				if act.GetVerb() != "delete" {
					continue
				}
				if r := act.GetResource().Resource; r != "jobs" && r != "secrets" {
					t.Errorf("deleted %s %s", r, act.(k8stesting.DeleteAction).GetName())
				}
				if act.GetResource().Resource == "jobs" && tc.noJob {
					t.Errorf("deleted job %s, which it never made", act.(k8stesting.DeleteAction).GetName())
				}
			}
		})
	}
}

// setEphemeralStatus is a step that gives every ephemeral container of the target pod state,
// as the kubelet would.
func setEphemeralStatus(t *testing.T, state corev1.ContainerState) func(*fake.Clientset) {
	return func(cs *fake.Clientset) {
		obj, err := cs.Tracker().Get(podsGVR, "shop", "nginx-abc")
		if err != nil {
			t.Error(err)
			return
		}
		p := obj.(*corev1.Pod)
		p.Status.EphemeralContainerStatuses = nil
		for _, ec := range p.Spec.EphemeralContainers {
			p.Status.EphemeralContainerStatuses = append(p.Status.EphemeralContainerStatuses,
				corev1.ContainerStatus{Name: ec.Name, Image: ec.Image, State: state})
		}
		if err := cs.Tracker().Update(podsGVR, p, "shop"); err != nil {
			t.Error(err)
		}
	}
}

// ephemeralCluster is a fake cluster holding targetPod in which each read of the target pod
// first runs the next of steps.
func ephemeralCluster(steps []func(*fake.Clientset)) *fake.Clientset {
	cs := fake.NewClientset(targetPod())
	cs.PrependReactor("get", "pods/log", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, &runtime.Unknown{Raw: []byte(testAgentLog)}, nil
	})
	calls := 0
	cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "" && calls < len(steps) {
			steps[calls](cs)
			calls++
		}
		return false, nil, nil
	})
	return cs
}

func TestStartEphemeral(t *testing.T) {
	cs := ephemeralCluster([]func(*fake.Clientset){
		setEphemeralStatus(t, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}),
		setEphemeralStatus(t, corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}),
	})
	var progress []string
	spec := AgentSpec{Image: testImage, Secret: []byte{0xca, 0xfe}, Capabilities: []corev1.Capability{"NET_ADMIN"},
		Progress: func(phase, detail string) { progress = append(progress, strings.TrimSpace(phase+" "+detail)) }}
	a, err := StartEphemeral(context.Background(), cs, spec, targetPod(), "app", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a.Port < 20000 || a.Port > 59999 {
		t.Errorf("agent port %d, want one in 20000..59999", a.Port)
	}
	if !regexp.MustCompile(`^doppel-agent-[0-9a-f]{10}$`).MatchString(a.Container) {
		t.Errorf("agent container %q, want doppel-agent-<10 hex digits>", a.Container)
	}
	session := strings.TrimPrefix(a.Container, "doppel-agent-")
	wantAgent := Agent{cs: cs, Namespace: "shop", Pod: "nginx-abc", Port: a.Port, Secret: a.Container, Container: a.Container}
	if diff := cmp.Diff(wantAgent, *a, cmp.AllowUnexported(Agent{}), cmp.Comparer(func(x, y *fake.Clientset) bool { return x == y })); diff != "" {
		t.Errorf("StartEphemeral (-want +got):\n%s", diff)
	}

	p, err := cs.CoreV1().Pods("shop").Get(context.Background(), "nginx-abc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []corev1.EphemeralContainer{EphemeralAgent(spec, session, a.Port, "app")}
	if diff := cmp.Diff(want, p.Spec.EphemeralContainers); diff != "" {
		t.Errorf("the pod's ephemeral containers (-want +got):\n%s", diff)
	}
	updated := slices.ContainsFunc(cs.Actions(), func(act k8stesting.Action) bool {
		return act.GetVerb() == "update" && act.GetSubresource() == "ephemeralcontainers"
	})
	if !updated {
		t.Errorf("the ephemeral container was not added through the ephemeralcontainers subresource; actions: %v", cs.Actions())
	}

	secret, err := cs.CoreV1().Secrets("shop").Get(context.Background(), a.Secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantOwners := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "nginx-abc", UID: "pod-uid"}}
	if diff := cmp.Diff(wantOwners, secret.OwnerReferences); diff != "" {
		t.Errorf("the secret's owners (-want +got):\n%s", diff)
	}
	if got := string(secret.Data["secret"]); got != hex.EncodeToString(spec.Secret) || secret.Labels["doppel.dev/session"] != session {
		t.Errorf("secret %s holds %q, session label %q; want %q, %q", secret.Name, got, secret.Labels["doppel.dev/session"], "cafe", session)
	}

	wantProgress := []string{
		"creating ephemeral container " + a.Container + " in pod shop/nginx-abc",
		"starting",
		"running ephemeral container " + a.Container,
	}
	if diff := cmp.Diff(wantProgress, progress); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
}

func TestStartEphemeralFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		react  func(*fake.Clientset)
		steps  []func(*fake.Clientset)
		errHas []string
	}{
		{
			name: "forbidden",
			react: func(cs *fake.Clientset) {
				cs.PrependReactor("update", "pods/ephemeralcontainers", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "nginx-abc",
						errors.New(`User "dev" cannot update resource "pods/ephemeralcontainers"`))
				})
			},
			errHas: []string{"add the agent's ephemeral container to pod nginx-abc in namespace shop: forbidden", "docs/KUBERNETES.md"},
		},
		{
			name: "image pull",
			steps: []func(*fake.Clientset){setEphemeralStatus(t, corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: "ImagePullBackOff", Message: "Back-off pulling image"}})},
			errHas: []string{"cannot pull the agent image " + testImage, "ImagePullBackOff: Back-off pulling image"},
		},
		{
			name: "agent exits",
			steps: []func(*fake.Clientset){setEphemeralStatus(t, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: 1, Reason: "Error"}})},
			errHas: []string{"the agent exited with status 1 (Error)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := ephemeralCluster(tc.steps)
			if tc.react != nil {
				tc.react(cs)
			}
			a, err := StartEphemeral(context.Background(), cs, AgentSpec{Image: testImage}, targetPod(), "app", 5*time.Second)
			if err == nil {
				t.Fatalf("StartEphemeral = agent %s, want an error", a.Container)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("StartEphemeral error %q does not mention %q", err, s)
				}
			}
			secrets, err := cs.CoreV1().Secrets("shop").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(secrets.Items) > 0 {
				t.Errorf("left secret %s", secrets.Items[0].Name)
			}
			if _, err := cs.CoreV1().Pods("shop").Get(context.Background(), "nginx-abc", metav1.GetOptions{}); err != nil {
				t.Errorf("the target pod: %v", err)
			}
		})
	}
}

func TestAgentStop(t *testing.T) {
	objects := func() []runtime.Object {
		meta := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "shop"} }
		return []runtime.Object{
			targetPod(),
			&batchv1.Job{ObjectMeta: meta("doppel-agent-s1")},
			&corev1.Secret{ObjectMeta: meta("doppel-agent-s1")},
			&batchv1.Job{ObjectMeta: meta("doppel-agent-s2")},
			&corev1.Secret{ObjectMeta: meta("doppel-agent-s2")},
		}
	}
	for _, tc := range []struct {
		name    string
		agent   Agent
		react   func(*fake.Clientset)
		errHas  string
		deleted []string // resource/name, in order
	}{
		{
			name:    "job",
			agent:   Agent{Namespace: "shop", Pod: "doppel-agent-s1-x7k2p", Job: "doppel-agent-s1", Secret: "doppel-agent-s1"},
			deleted: []string{"jobs/doppel-agent-s1", "secrets/doppel-agent-s1"},
		},
		{
			name:    "job already gone",
			agent:   Agent{Namespace: "shop", Job: "doppel-agent-gone", Secret: "doppel-agent-s1"},
			deleted: []string{"jobs/doppel-agent-gone", "secrets/doppel-agent-s1"},
		},
		{
			name:  "job not deleted",
			agent: Agent{Namespace: "shop", Job: "doppel-agent-s1", Secret: "doppel-agent-s1"},
			react: func(cs *fake.Clientset) {
				cs.PrependReactor("delete", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "doppel-agent-s1", errors.New("no"))
				})
			},
			errHas:  "delete the agent's job shop/doppel-agent-s1",
			deleted: []string{"jobs/doppel-agent-s1", "secrets/doppel-agent-s1"},
		},
		{
			name:    "ephemeral",
			agent:   Agent{Namespace: "shop", Pod: "nginx-abc", Secret: "doppel-agent-s1", Container: "doppel-agent-s1"},
			deleted: []string{"secrets/doppel-agent-s1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(objects()...)
			if tc.react != nil {
				tc.react(cs)
			}
			a := tc.agent
			a.cs = cs
			err := a.Stop()
			if tc.errHas == "" && err != nil || tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Errorf("Stop = %v, want an error with %q", err, tc.errHas)
			}
			var deleted []string
			for _, act := range cs.Actions() {
				del, ok := act.(k8stesting.DeleteAction)
				if !ok {
					continue
				}
				deleted = append(deleted, del.GetResource().Resource+"/"+del.GetName())
				if del.GetResource().Resource == "jobs" {
					var got metav1.DeletionPropagation
					if p := del.GetDeleteOptions().PropagationPolicy; p != nil {
						got = *p
					}
					if got != metav1.DeletePropagationBackground {
						t.Errorf("job deleted with propagation %q, want Background (else its pod stays)", got)
					}
				}
			}
			if diff := cmp.Diff(tc.deleted, deleted); diff != "" {
				t.Errorf("deleted (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAgentFailed(t *testing.T) {
	jobPod := func(status corev1.PodStatus) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "doppel-agent-s1-x7k2p", Namespace: "shop"},
			Spec: corev1.PodSpec{NodeName: "node-1"}, Status: status}
	}
	withEphemeral := func(state corev1.ContainerState) *corev1.Pod {
		p := targetPod()
		p.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{
			{Name: "doppel-agent-old", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}},
			{Name: "doppel-agent-s1", Image: testImage, State: state},
		}
		return p
	}
	jobAgent := Agent{Namespace: "shop", Pod: "doppel-agent-s1-x7k2p", Job: "doppel-agent-s1", Container: "doppel-agent"}
	ephemeral := Agent{Namespace: "shop", Pod: "nginx-abc", Container: "doppel-agent-s1"}
	for _, tc := range []struct {
		name  string
		agent Agent
		pod   *corev1.Pod
		want  string // in the answer; "" for none
	}{
		{name: "job running", agent: jobAgent, pod: jobPod(runningStatus())},
		{name: "job pod failed", agent: jobAgent, pod: jobPod(terminatedStatus(corev1.PodFailed, 2, "Error", "")),
			want: "agent pod shop/doppel-agent-s1-x7k2p failed: exited with status 2 Error"},
		{name: "job pod deleted", agent: jobAgent, want: "its pod shop/doppel-agent-s1-x7k2p was deleted"},
		{name: "ephemeral running", agent: ephemeral, pod: withEphemeral(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})},
		{name: "ephemeral exited", agent: ephemeral,
			pod:  withEphemeral(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}),
			want: "the agent exited with status 1 (Error)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			if tc.pod != nil {
				cs = fake.NewClientset(tc.pod)
			}
			a := tc.agent
			a.cs = cs
			got := a.Failed(context.Background())
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Errorf("Failed = %q, want %q", got, tc.want)
			}
		})
	}
}

// A session without a target runs the agent in a pod of its own that Pod Security's
// "restricted" level admits: no hostPID, no node pinned, nobody, no capabilities, and the
// namespace's service-account token mounted for the program to read.
func TestTargetlessJob(t *testing.T) {
	spec := AgentSpec{Image: "doppel.local/agent:1", Grace: 3 * time.Second}
	job := TargetlessJob(spec, "0123456789", "shop")
	ps := job.Spec.Template.Spec
	c := ps.Containers[0]
	if job.Namespace != "shop" || ps.HostPID || ps.NodeName != "" || ps.AutomountServiceAccountToken != nil || ps.Tolerations != nil {
		t.Errorf("pod: namespace %q hostPID %v node %q automount %v tolerations %v", job.Namespace, ps.HostPID, ps.NodeName,
			ps.AutomountServiceAccountToken, ps.Tolerations)
	}
	want := []string{"/doppel", "agent", "--self", "--listen", "127.0.0.1:4711", "--grace", "3s", "--log-level", "warn", "--stream-window", "16777216"}
	if diff := cmp.Diff(want, c.Command); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	sc := c.SecurityContext
	if sc == nil || *sc.RunAsUser != 65534 || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || sc.Privileged != nil ||
		len(sc.Capabilities.Add) != 0 || len(sc.Capabilities.Drop) != 1 || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("security context %+v is not restricted", sc)
	}
	if job.Annotations[AnnotTarget] != "none (namespace shop)" {
		t.Errorf("annotation %q", job.Annotations[AnnotTarget])
	}
	spec.Namespace = "agents"
	if job := TargetlessJob(spec, "0123456789", "shop"); job.Namespace != "agents" {
		t.Errorf("with agent.namespace: %s", job.Namespace)
	}
}
