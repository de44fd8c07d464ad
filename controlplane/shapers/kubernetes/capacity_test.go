package kubernetes_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
	"github.com/headstart-dev/headstart/resources"
)

// otherWork runs n pods on kwok's nodes, each requesting cpu and memory.
func otherWork(t *testing.T, p *kubetest.Plane, ns string, n int, cpu, memory string) {
	t.Helper()
	for i := range n {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("other-%d", i), Namespace: ns, Labels: map[string]string{"app": "other"}},
			Spec: corev1.PodSpec{
				Tolerations: []corev1.Toleration{kubetest.Toleration},
				Containers: []corev1.Container{{Name: "w", Image: "someone-else", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory)}}}},
			},
		}
		if _, err := p.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, fmt.Sprintf("%d other pods running", n), func() bool { return countPods(t, p, ns, "app=other", corev1.PodRunning) == n })
}

func vec(cpu, memGiB float64) resources.Vector {
	return resources.Vector{}.With(resources.CPU, cpu).With(resources.Memory, memGiB*(1<<30))
}

// TestCapacityIsTheNodesAllocatableLessOtherWork: the pool's capacity is
// the allocatable of its Ready, schedulable nodes; other pods' requests are
// in use; Headstart's placeholders are held, not in use; a node selector
// picks the pool's nodes and a cordoned node does not count.
func TestCapacityIsTheNodesAllocatableLessOtherWork(t *testing.T) {
	p := kubetest.Start(t, "4", "16Gi")
	ctx := context.Background()
	s := kubernetes.New(p.Client, kubernetes.Options{Placeholders: kubernetes.Placeholders{Namespace: "work", Tolerations: []corev1.Toleration{kubetest.Toleration}}})
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "work"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	measure := func(selector string) shapers.Capacity {
		t.Helper()
		c, err := s.Capacity(ctx, selector)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := measure(""); c.Total != vec(4, 16) || !c.InUse.IsZero() || c.Machines != 1 {
		t.Fatalf("an empty node: %+v", c)
	}

	otherWork(t, p, "work", 3, "1", "2Gi")
	if err := s.EnsurePriorityClass(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Hold(ctx, shapers.Hold{Key: "k", Stage: "W/s", Resources: vec(0.5, 1), Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the placeholder running", func() bool { return countPods(t, p, "work", kubernetes.LabelReservation, corev1.PodRunning) == 1 })
	c := measure("")
	if c.Total != vec(4, 16) || c.InUse != vec(3, 6) || c.Held != vec(0.5, 1) {
		t.Fatalf("three 1-CPU pods and a placeholder on a 4-CPU node: %+v", c)
	}

	p.AddNode(t, "kwok-node-1", "8", "32Gi")
	if c := measure(""); c.Total != vec(12, 48) || c.Machines != 2 {
		t.Fatalf("two nodes: %+v", c)
	}
	if c := measure("kubernetes.io/hostname=kwok-node-1"); c.Total != vec(8, 32) || !c.InUse.IsZero() || c.Machines != 1 {
		t.Fatalf("the second node alone: %+v", c)
	}
	n, err := p.Client.CoreV1().Nodes().Get(ctx, "kwok-node-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Unschedulable = true
	if _, err := p.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if c := measure(""); c.Total != vec(4, 16) || c.Machines != 1 {
		t.Fatalf("a cordoned node takes no new pods, so it is not the pool's: %+v", c)
	}
	if c := measure("headstart.dev/pool=none"); c.Machines != 0 || !c.Total.IsZero() {
		t.Fatalf("a selector that picks no node: %+v", c)
	}
	if _, err := s.Capacity(ctx, "a==b=c"); !errors.Is(err, shapers.ErrInvalidAction) {
		t.Fatalf("a bad selector: %v", err)
	}
}
