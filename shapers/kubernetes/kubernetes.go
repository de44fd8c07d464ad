// Package kubernetes is a shaper for stages whose workers run as Kubernetes
// Deployments: it scales a Deployment through its scale subresource, in
// bounded steps, and refuses a Deployment that a HorizontalPodAutoscaler
// already scales (two controllers would fight). A target's Name is
// "namespace/deployment".
package kubernetes

import (
	"context"
	"fmt"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/headstart-dev/headstart/shapers"
)

// Kind is the target kind this shaper manages.
const Kind = "deployment"

// Options configure a Shaper.
type Options struct {
	// MinReplicas and MaxReplicas bound every action. If MaxReplicas is not set, 100.
	MinReplicas, MaxReplicas int
	// MaxStep bounds how many replicas one action adds or removes. If not set, no bound.
	MaxStep int
	// FieldManager names Headstart in the objects it changes. If not set, "headstart".
	FieldManager string
}

// Shaper scales Deployments. Safe for concurrent use.
type Shaper struct {
	client k8s.Interface
	opts   Options
}

var _ shapers.Shaper = (*Shaper)(nil)

// New returns a Deployment shaper using client.
func New(client k8s.Interface, opts Options) *Shaper {
	if opts.MaxReplicas <= 0 {
		opts.MaxReplicas = 100
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "headstart"
	}
	return &Shaper{client: client, opts: opts}
}

func split(t shapers.Target) (ns, name string, err error) {
	if t.Kind != Kind {
		return "", "", fmt.Errorf("%w: %s (this shaper scales %s targets)", shapers.ErrUnknownTarget, t, Kind)
	}
	ns, name, ok := strings.Cut(t.Name, "/")
	if !ok || ns == "" || name == "" {
		return "", "", fmt.Errorf("%w: %s: name must be namespace/deployment", shapers.ErrInvalidAction, t)
	}
	return ns, name, nil
}

// Status implements shapers.Shaper: the Deployment's desired and ready replicas.
func (s *Shaper) Status(ctx context.Context, t shapers.Target) (shapers.Status, error) {
	ns, name, err := split(t)
	if err != nil {
		return shapers.Status{}, err
	}
	d, err := s.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return shapers.Status{}, fmt.Errorf("%w: %s: %v", shapers.ErrUnknownTarget, t, err)
	}
	if err != nil {
		return shapers.Status{}, fmt.Errorf("status of %s: %w", t, err)
	}
	want := 1
	if d.Spec.Replicas != nil {
		want = int(*d.Spec.Replicas)
	}
	st := shapers.Status{Target: t, Replicas: want, Ready: int(d.Status.ReadyReplicas)}
	st.Converged = st.Ready == want && int(d.Status.Replicas) == want && d.Status.ObservedGeneration >= d.Generation
	if !st.Converged {
		st.Message = fmt.Sprintf("%d of %d replicas ready", st.Ready, want)
	}
	return st, nil
}

// Apply implements shapers.Shaper: it sets the Deployment's replicas through
// the scale subresource (server-side dry run when asked), bounded by
// MinReplicas, MaxReplicas and MaxStep. Resources and concurrency are not
// set this way: ErrUnsupported.
func (s *Shaper) Apply(ctx context.Context, a shapers.Action) (shapers.Status, error) {
	if err := a.Validate(); err != nil {
		return shapers.Status{}, err
	}
	ns, name, err := split(a.Target)
	if err != nil {
		return shapers.Status{}, err
	}
	if a.Desired.Resources != nil || a.Desired.Concurrency != nil {
		return shapers.Status{}, fmt.Errorf("%w: %s: only replicas are scaled here", shapers.ErrUnsupported, a.Target)
	}
	if a.Desired.Replicas == nil {
		return s.Status(ctx, a.Target)
	}
	if err := s.refuseIfAutoscaled(ctx, ns, name); err != nil {
		return shapers.Status{}, fmt.Errorf("%s: %w", a.Target, err)
	}
	scale, err := s.client.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return shapers.Status{}, fmt.Errorf("%w: %s: %v", shapers.ErrUnknownTarget, a.Target, err)
	}
	if err != nil {
		return shapers.Status{}, fmt.Errorf("scale of %s: %w", a.Target, err)
	}
	want := min(max(*a.Desired.Replicas, s.opts.MinReplicas), s.opts.MaxReplicas)
	cur := int(scale.Spec.Replicas)
	if s.opts.MaxStep > 0 {
		want = min(max(want, cur-s.opts.MaxStep), cur+s.opts.MaxStep)
	}
	if want != cur {
		upd := &autoscalingv1.Scale{ObjectMeta: scale.ObjectMeta, Spec: autoscalingv1.ScaleSpec{Replicas: int32(want)}}
		opts := metav1.UpdateOptions{FieldManager: s.opts.FieldManager}
		if a.DryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := s.client.AppsV1().Deployments(ns).UpdateScale(ctx, name, upd, opts); err != nil {
			return shapers.Status{}, fmt.Errorf("scale %s to %d: %w", a.Target, want, err)
		}
	}
	st, err := s.Status(ctx, a.Target)
	if a.DryRun && err == nil {
		st.Replicas, st.Converged, st.Message = want, false, "dry run: nothing changed"
	}
	return st, err
}

// ErrAutoscaled is returned for a Deployment that a HorizontalPodAutoscaler scales.
var ErrAutoscaled = fmt.Errorf("%w: a HorizontalPodAutoscaler scales this deployment; Headstart will not fight it", shapers.ErrUnsupported)

func (s *Shaper) refuseIfAutoscaled(ctx context.Context, ns, name string) error {
	hpas, err := s.client.AutoscalingV1().HorizontalPodAutoscalers(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list autoscalers: %w", err)
	}
	for _, h := range hpas.Items {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == name {
			return fmt.Errorf("%w (%s/%s)", ErrAutoscaled, ns, h.Name)
		}
	}
	return nil
}
