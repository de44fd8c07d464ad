package kubernetes_test

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
	"github.com/headstart-dev/headstart/resources"
)

// requests returns the CPU and memory requests of the first container of
// every live pod of app, from the spec and from the kubelet's status.
func requests(t *testing.T, p *kubetest.Plane, ns, app string) (spec, status []string) {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil {
			continue
		}
		r := pod.Spec.Containers[0].Resources.Requests
		spec = append(spec, r.Cpu().String()+"/"+r.Memory().String())
		if len(pod.Status.ContainerStatuses) > 0 && pod.Status.ContainerStatuses[0].Resources != nil {
			r := pod.Status.ContainerStatuses[0].Resources.Requests
			status = append(status, r.Cpu().String()+"/"+r.Memory().String())
		}
	}
	return spec, status
}

// TestResizeInPlaceInBoundedSteps: the pods of a stage are resized through
// the resize subresource, at most ×2 per action; the spec shows it at once
// and Status is not converged until the kubelet (kwok here) applies it; the
// same action twice changes nothing more; a dry run changes nothing.
func TestResizeInPlaceInBoundedSteps(t *testing.T) {
	p := kubetest.Start(t, "16", "64Gi")
	ctx := context.Background()
	deployment(t, p, "stages", "train", 2, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")})
	s := kubernetes.New(p.Client, kubernetes.Options{})
	target := shapers.Target{Kind: kubernetes.Kind, Name: "stages/train"}
	waitConverged(t, s, target)

	want := resources.Vector{}.With(resources.CPU, 4).With(resources.Memory, 3<<30)
	resize := func(dry bool) shapers.Status {
		t.Helper()
		st, err := s.Apply(ctx, shapers.Action{Target: target, Desired: shapers.Desired{Resources: &want}, Reason: "predicted 4 CPU / 3 GiB", DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := resize(true); !strings.HasPrefix(st.Message, "dry run") {
		t.Fatalf("dry run status %+v", st)
	}
	if spec, _ := requests(t, p, "stages", "train"); spec[0] != "500m/1Gi" || spec[1] != "500m/1Gi" {
		t.Fatalf("a dry run resized the pods: %v", spec)
	}

	// One step: CPU 0.5 → 1 (×2 at most), memory 1 → 2 GiB.
	st := resize(false)
	t.Logf("right after the first step: %+v", st)
	spec, _ := requests(t, p, "stages", "train")
	if spec[0] != "1/2Gi" || spec[1] != "1/2Gi" {
		t.Fatalf("after one step the pods request %v, want 1/2Gi each", spec)
	}
	st = waitConverged(t, s, target)
	if st.Resources.Get(resources.CPU) != 1 || st.Resources.Get(resources.Memory) != 2<<30 {
		t.Fatalf("status resources %v after the first step", st.Resources)
	}
	_, applied := requests(t, p, "stages", "train")
	if applied[0] != "1/2Gi" || applied[1] != "1/2Gi" {
		t.Fatalf("the kubelet reports %v, want 1/2Gi each", applied)
	}
	resize(false) // 1 → 2 CPU, 2 → 3 GiB
	resize(false) // 2 → 4 CPU
	waitConverged(t, s, target)
	if spec, _ := requests(t, p, "stages", "train"); spec[0] != "4/3Gi" || spec[1] != "4/3Gi" {
		t.Fatalf("after three steps the pods request %v, want 4/3Gi each", spec)
	}
	pods, _ := p.Client.CoreV1().Pods("stages").List(ctx, metav1.ListOptions{LabelSelector: "app=train"})
	versions := map[string]string{}
	for _, pod := range pods.Items {
		versions[pod.Name] = pod.ResourceVersion
	}
	resize(false)
	pods, _ = p.Client.CoreV1().Pods("stages").List(ctx, metav1.ListOptions{LabelSelector: "app=train"})
	for _, pod := range pods.Items {
		if versions[pod.Name] != pod.ResourceVersion {
			t.Fatalf("applying the same resize again changed pod %s", pod.Name)
		}
	}
}

func waitConverged(t *testing.T, s *kubernetes.Shaper, target shapers.Target) shapers.Status {
	t.Helper()
	var st shapers.Status
	waitFor(t, target.String()+" to converge", func() bool {
		var err error
		st, err = s.Status(context.Background(), target)
		if err != nil {
			t.Fatal(err)
		}
		return st.Converged
	})
	return st
}

// TestScaleDownWaitsForTheCooldown: scaling up is immediate; a scale-down
// within the cooldown of the last change is held (and Status says until
// when); after it, the scale-down happens.
func TestScaleDownWaitsForTheCooldown(t *testing.T) {
	p := kubetest.Start(t, "8", "32Gi")
	ctx := context.Background()
	deployment(t, p, "stages", "train", 0, nil)
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	s := kubernetes.New(p.Client, kubernetes.Options{Cooldown: 5 * time.Minute, Now: func() time.Time { return now }})
	target := shapers.Target{Kind: kubernetes.Kind, Name: "stages/train"}
	scale := func(n int) shapers.Status {
		t.Helper()
		st, err := s.Apply(ctx, shapers.Action{Target: target, Desired: shapers.Desired{Replicas: shapers.Int(n)}, Reason: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := scale(3); st.Replicas != 3 {
		t.Fatalf("scale up: %+v", st)
	}
	now = now.Add(time.Minute)
	if st := scale(5); st.Replicas != 5 {
		t.Fatalf("a scale-up within the cooldown must not wait: %+v", st)
	}
	now = now.Add(4 * time.Minute)
	st := scale(1)
	if st.Replicas != 5 || st.Converged || !strings.Contains(st.Message, "cooldown until 2026-11-22T12:06:00Z") {
		t.Fatalf("a scale-down 4 min after the last change: %+v, want held until 12:06", st)
	}
	now = now.Add(time.Minute)
	if st := scale(1); st.Replicas != 1 {
		t.Fatalf("after the cooldown: %+v", st)
	}
}

// TestStatusReportsAResizeTheKubeletHasNotApplied: kwok applies a resize at
// once, so a kubelet that has not (yet) — here one that finds it infeasible
// — is played by a fake clientset.
func TestStatusReportsAResizeTheKubeletHasNotApplied(t *testing.T) {
	labels := map[string]string{"app": "train"}
	one := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	two := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}
	replicas := int32(1)
	client := fake.NewClientset(
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: "stages"},
			Spec:   appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels}},
			Status: appsv1.DeploymentStatus{Replicas: 1, ReadyReplicas: 1}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "train-1", Namespace: "stages", Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Resources: corev1.ResourceRequirements{Requests: two}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning,
				Conditions:        []corev1.PodCondition{{Type: corev1.PodResizePending, Status: corev1.ConditionTrue, Reason: "Infeasible", Message: "Node didn't have enough capacity: cpu"}},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "worker", Resources: &corev1.ResourceRequirements{Requests: one}}}}},
	)
	st, err := kubernetes.New(client, kubernetes.Options{}).Status(context.Background(), shapers.Target{Kind: kubernetes.Kind, Name: "stages/train"})
	if err != nil {
		t.Fatal(err)
	}
	want := "resize of 1 of 1 pods not applied by the kubelet yet (Infeasible: Node didn't have enough capacity: cpu)"
	if st.Converged || st.Message != want || st.Resources.Get(resources.CPU) != 2 {
		t.Fatalf("status %+v, want not converged, 2 CPU asked, and %q", st, want)
	}
}
