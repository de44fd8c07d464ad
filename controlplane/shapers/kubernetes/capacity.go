package kubernetes

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

var _ shapers.CapacityReader = (*Shaper)(nil)

// Capacity measures the pool of nodes that selector (a node label selector;
// empty: every node) picks: Total is the allocatable CPU and memory of the
// Ready nodes that take new pods (not cordoned), InUse the requests of the
// pods bound to them that have not finished, except Headstart's
// placeholders (their requests are Held). A pod's request is the larger of
// its containers' sum and its largest init container, plus its overhead, as
// the scheduler counts it.
func (s *Shaper) Capacity(ctx context.Context, selector string) (shapers.Capacity, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return shapers.Capacity{}, fmt.Errorf("%w: node selector %q: %v", shapers.ErrInvalidAction, selector, err)
	}
	nodes, err := s.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return shapers.Capacity{}, fmt.Errorf("list nodes %q: %w", selector, err)
	}
	out := shapers.Capacity{Source: "kubernetes nodes"}
	if selector != "" {
		out.Source += " " + selector
	}
	in := map[string]bool{}
	for _, n := range nodes.Items {
		if n.Spec.Unschedulable || !ready(n) {
			continue
		}
		in[n.Name] = true
		out.Machines++
		out.Total = out.Total.Add(quantities(n.Status.Allocatable))
	}
	if out.Machines == 0 {
		return out, nil
	}
	// Finished pods hold nothing; the rest are filtered by node below.
	pods, err := s.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: "status.phase!=" + string(corev1.PodSucceeded) + ",status.phase!=" + string(corev1.PodFailed),
	})
	if err != nil {
		return shapers.Capacity{}, fmt.Errorf("list pods: %w", err)
	}
	for _, p := range pods.Items {
		if !in[p.Spec.NodeName] {
			continue
		}
		if _, placeholder := p.Labels[LabelReservation]; placeholder && p.Labels[LabelManagedBy] == "headstart" {
			out.Held = out.Held.Add(podRequests(p.Spec))
			continue
		}
		out.InUse = out.InUse.Add(podRequests(p.Spec))
	}
	return out, nil
}

func ready(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// quantities reads CPU and memory of a resource list.
func quantities(l corev1.ResourceList) resources.Vector {
	return requested(corev1.ResourceRequirements{Requests: l})
}

// podRequests is what the scheduler counts a pod as requesting.
func podRequests(spec corev1.PodSpec) resources.Vector {
	var sum resources.Vector
	for _, c := range spec.Containers {
		sum = sum.Add(requested(c.Resources))
	}
	for _, c := range spec.InitContainers {
		r := requested(c.Resources)
		for _, k := range []resources.Kind{resources.CPU, resources.Memory} {
			if r.Get(k) > sum.Get(k) {
				sum = sum.With(k, r.Get(k))
			}
		}
	}
	return sum.Add(quantities(spec.Overhead))
}
