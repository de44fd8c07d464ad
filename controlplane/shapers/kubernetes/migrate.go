package kubernetes

import (
	"context"
	"fmt"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart/controlplane/shapers"
)

var _ shapers.Migrator = (*Shaper)(nil)

// Migrate implements shapers.Migrator: it moves a stage's pods off node
// m.From without cordoning it, through the eviction API, so every
// PodDisruptionBudget holds: an eviction the budget refuses is reported as
// blocked, to be retried later. The Deployment's ReplicaSet replaces each
// evicted pod and the scheduler places the replacement where its scoring
// finds the most room; since the node is neither cordoned nor tainted, a
// replacement may land on it again when it still has the most room by
// requests — migrating is rebalancing, not draining.
func (s *Shaper) Migrate(ctx context.Context, m shapers.Migration) (shapers.Moved, error) {
	if err := m.Validate(); err != nil {
		return shapers.Moved{}, err
	}
	d, err := s.deployment(ctx, m.Target)
	if err != nil {
		return shapers.Moved{}, err
	}
	pods, err := s.podsOf(ctx, d)
	if err != nil {
		return shapers.Moved{}, err
	}
	var out shapers.Moved
	opts := metav1.DeleteOptions{}
	if m.DryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, pod := range pods {
		if pod.Spec.NodeName != m.From {
			continue
		}
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace}, DeleteOptions: &opts}
		err := s.client.CoreV1().Pods(pod.Namespace).EvictV1(ctx, ev)
		switch {
		case err == nil:
			out.Moved = append(out.Moved, pod.Name)
		case apierrors.IsNotFound(err):
			// Already gone.
		case apierrors.IsTooManyRequests(err):
			out.Blocked = append(out.Blocked, pod.Name)
		default:
			return out, fmt.Errorf("evict %s/%s from %s: %w", pod.Namespace, pod.Name, m.From, err)
		}
	}
	out.Message = fmt.Sprintf("%d pods of %s evicted from %s", len(out.Moved), m.Target, m.From)
	if len(out.Blocked) > 0 {
		out.Message += fmt.Sprintf(", %d held by a disruption budget", len(out.Blocked))
	}
	if m.DryRun {
		out.Message = "dry run: " + out.Message
	}
	return out, nil
}
