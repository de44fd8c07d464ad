package kubernetes_test

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
	"github.com/headstart-dev/headstart/resources"
)

func countPods(t *testing.T, p *kubetest.Plane, ns, selector string, phase corev1.PodPhase) int {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, pod := range pods.Items {
		if pod.Status.Phase == phase && pod.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPlaceholdersHoldCapacityUntilRealWorkNeedsIt: placeholder pods hold a
// node's room; a worker pod that needs it preempts them; release removes them.
func TestPlaceholdersHoldCapacityUntilRealWorkNeedsIt(t *testing.T) {
	p := kubetest.Start(t, "4", "16Gi")
	ctx := context.Background()
	s := kubernetes.New(p.Client, kubernetes.Options{Placeholders: kubernetes.Placeholders{Namespace: "stages", Tolerations: []corev1.Toleration{kubetest.Toleration}}})
	if err := s.EnsurePriorityClass(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsurePriorityClass(ctx); err != nil {
		t.Fatalf("a second ensure must be a no-op: %v", err)
	}
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "stages"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const key = "prefetch/Pipeline/Train/1"
	hold := shapers.Hold{Key: key, Stage: "Pipeline/Train", Resources: resources.Vector{}.With(resources.CPU, 1).With(resources.Memory, 1<<30), Replicas: 3}
	if err := s.Hold(ctx, shapers.Hold{Key: key, Stage: "Pipeline/Train", Replicas: 3}); !errors.Is(err, shapers.ErrInvalidAction) {
		t.Fatalf("a hold of nothing: %v", err)
	}
	if err := s.Hold(ctx, hold); err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx, hold); err != nil {
		t.Fatalf("holding the same key again must be a no-op: %v", err)
	}
	holds := kubernetes.LabelManagedBy + "=headstart"
	waitFor(t, "3 placeholders running", func() bool { return countPods(t, p, "stages", holds, corev1.PodRunning) == 3 })

	// A worker needing 2 CPU: only 1 is free, so the scheduler preempts placeholders.
	worker := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "train-worker", Namespace: "stages", Labels: map[string]string{"app": "train"}},
		Spec: corev1.PodSpec{
			Tolerations: []corev1.Toleration{kubetest.Toleration},
			Containers: []corev1.Container{{Name: "w", Image: "headstart/stage-worker", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}}},
		},
	}
	if _, err := p.Client.CoreV1().Pods("stages").Create(ctx, worker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the worker to run on preempted room", func() bool { return countPods(t, p, "stages", "app=train", corev1.PodRunning) == 1 })
	if n := countPods(t, p, "stages", holds, corev1.PodRunning); n > 2 {
		t.Fatalf("%d placeholders still running beside a 2-CPU worker on a 4-CPU node", n)
	}

	if err := s.Release(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, key); err != nil {
		t.Fatalf("a second release must be a no-op: %v", err)
	}
	waitFor(t, "the placeholders to go", func() bool {
		pods, _ := p.Client.CoreV1().Pods("stages").List(ctx, metav1.ListOptions{LabelSelector: holds})
		return len(pods.Items) == 0
	})
}

// TestObjectsHeadstartCreatesAreOwnedAndLabelled: with an owner set (here
// the Headstart worker's Deployment), placeholders carry its reference and
// Headstart's labels, and the garbage collector removes them with it.
func TestObjectsHeadstartCreatesAreOwnedAndLabelled(t *testing.T) {
	p := kubetest.Start(t, "4", "16Gi")
	ctx := context.Background()
	deployment(t, p, "headstart", "headstart-worker", 0, nil)
	owner, err := p.Client.AppsV1().Deployments("headstart").Get(ctx, "headstart-worker", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := kubernetes.New(p.Client, kubernetes.Options{Owner: &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: owner.Name, UID: owner.UID},
		Placeholders: kubernetes.Placeholders{Namespace: "headstart", Tolerations: []corev1.Toleration{kubetest.Toleration}}})
	if err := s.EnsurePriorityClass(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx, shapers.Hold{Key: "prefetch/train/7", Stage: "Pipeline/Train", Resources: resources.Vector{}.With(resources.CPU, 0.5), Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	held, err := p.Client.AppsV1().Deployments("headstart").List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelManagedBy + "=headstart"})
	if err != nil {
		t.Fatal(err)
	}
	if len(held.Items) != 1 || len(held.Items[0].OwnerReferences) != 1 || held.Items[0].OwnerReferences[0].UID != owner.UID {
		t.Fatalf("placeholders %+v: want one, owned by the worker's Deployment", held.Items)
	}
	if err := p.Client.AppsV1().Deployments("headstart").Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the garbage collector to remove the placeholders with their owner", func() bool {
		held, err := p.Client.AppsV1().Deployments("headstart").List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelManagedBy + "=headstart"})
		return err == nil && len(held.Items) == 0
	})
}
