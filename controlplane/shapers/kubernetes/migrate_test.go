package kubernetes_test

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
)

// nodesOf counts the live pods of app per node.
func nodesOf(t *testing.T, p *kubetest.Plane, ns, app string) map[string]int {
	t.Helper()
	pods, err := p.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp == nil && pod.Status.Phase == "Running" {
			n[pod.Spec.NodeName]++
		}
	}
	return n
}

// TestMigrationEvictsWithinThePodDisruptionBudget: a stage's pods leave a
// hot node through the eviction API. While the budget allows no disruption
// every pod is reported blocked and stays; once it allows one, migrating
// again (level-based) evicts, and the scheduler places the replacements on
// the node with room. (kwok replaces a pod within milliseconds, so the
// budget allows the next eviction almost at once: how many go in one pass
// is the budget's and the cluster's call.)
func TestMigrationEvictsWithinThePodDisruptionBudget(t *testing.T) {
	p := kubetest.Start(t, "6", "32Gi")
	ctx := context.Background()
	deployment(t, p, "stages", "train", 3, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")})
	waitFor(t, "3 pods on the first node", func() bool { return nodesOf(t, p, "stages", "train")["kwok-node-0"] == 3 })
	p.AddNode(t, "kwok-node-1", "6", "32Gi")
	_, err := p.Client.PolicyV1().PodDisruptionBudgets("stages").Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: "stages"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(3)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "train"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	budget := func(allowed int32) func() bool {
		return func() bool {
			b, err := p.Client.PolicyV1().PodDisruptionBudgets("stages").Get(ctx, "train", metav1.GetOptions{})
			return err == nil && b.Status.ObservedGeneration == b.Generation && b.Status.DisruptionsAllowed == allowed && b.Status.CurrentHealthy == 3
		}
	}
	waitFor(t, "the budget to allow no disruption", budget(0))

	s := kubernetes.New(p.Client, kubernetes.Options{})
	target := shapers.Target{Kind: kubernetes.Kind, Name: "stages/train"}
	m := shapers.Migration{Target: target, From: "kwok-node-0", Reason: "node running hot"}
	if _, err := s.Migrate(ctx, shapers.Migration{Target: target, Reason: "x"}); !errors.Is(err, shapers.ErrInvalidAction) {
		t.Fatalf("a migration from nowhere: %v", err)
	}
	moved, err := s.Migrate(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("budget allows none: %s", moved.Message)
	if len(moved.Moved) != 0 || len(moved.Blocked) != 3 {
		t.Fatalf("%+v: want all 3 held by the budget", moved)
	}
	if n := nodesOf(t, p, "stages", "train")["kwok-node-0"]; n != 3 {
		t.Fatalf("%d pods left on the node, want 3", n)
	}

	b, err := p.Client.PolicyV1().PodDisruptionBudgets("stages").Get(ctx, "train", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Spec.MinAvailable = ptr(intstr.FromInt32(2))
	if _, err := p.Client.PolicyV1().PodDisruptionBudgets("stages").Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the budget to allow one disruption", budget(1))
	dry := m
	dry.DryRun = true
	if moved, err := s.Migrate(ctx, dry); err != nil || len(moved.Moved) == 0 {
		t.Fatalf("dry run: %+v, %v", moved, err)
	}
	if n := nodesOf(t, p, "stages", "train")["kwok-node-0"]; n != 3 {
		t.Fatalf("a dry run evicted pods: %d left on the node", n)
	}
	if moved, err = s.Migrate(ctx, m); err != nil {
		t.Fatal(err)
	}
	t.Logf("budget allows one: %s", moved.Message)
	if len(moved.Moved) == 0 {
		t.Fatalf("%+v: want evictions once the budget allows", moved)
	}
	waitFor(t, "the evicted pods to go and their replacements to run on the node with room", func() bool {
		for _, n := range moved.Moved {
			pod, err := p.Client.CoreV1().Pods("stages").Get(ctx, n, metav1.GetOptions{})
			if err == nil && pod.DeletionTimestamp == nil {
				return false
			}
		}
		n := nodesOf(t, p, "stages", "train")
		return n["kwok-node-0"]+n["kwok-node-1"] == 3 && n["kwok-node-1"] > 0
	})
	t.Logf("pods per node after the migration: %v", nodesOf(t, p, "stages", "train"))
}

func ptr[T any](v T) *T { return &v }
