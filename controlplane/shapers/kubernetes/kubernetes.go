// Package kubernetes is a shaper for stages whose workers run as Kubernetes
// Deployments. It scales a Deployment through its scale subresource, in
// bounded steps and with a cooldown before scaling down, and refuses a
// Deployment that a HorizontalPodAutoscaler or a KEDA ScaledObject already
// scales (two controllers would fight); it resizes the Deployment's pods in
// place through the pods' resize subresource; it holds soft reservations as
// low-priority placeholder pods; it sets bandwidth annotations; and it moves
// pods off a node through the eviction API, which honours
// PodDisruptionBudgets. A target's Name is "namespace/deployment".
//
// Every call is level-based and idempotent, honours DryRun with a
// server-side dry run, and needs only the permissions of the Role in
// deploy/kubernetes.
package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/headstart-dev/headstart/controlplane/shapers"
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
	// Cooldown is how long after a change of replicas a scale-down waits,
	// so that replicas follow a falling prediction gradually. Scaling up
	// never waits: capacity is wanted ahead of the tasks. If zero, one
	// minute; negative, no cooldown.
	Cooldown time.Duration
	// MaxResizeFactor bounds one resize: each action moves a pod's CPU and
	// memory requests at most this factor up or down. If not set, 2.
	MaxResizeFactor float64
	// Container is the container of a stage's pods that is resized. If not set, the first.
	Container string
	// Owner, if set, owns every object Headstart creates (e.g. the Headstart
	// worker's Deployment), so deleting it cleans them up; they carry
	// Headstart's labels in any case.
	Owner *metav1.OwnerReference
	// Placeholders configure soft reservations (Hold); Hold and Release
	// need its Namespace.
	Placeholders Placeholders
	// Now is the clock for cooldowns. If not set, time.Now.
	Now func() time.Time
}

// AnnotationScaledAt records on a Deployment when Headstart last changed its replicas.
const AnnotationScaledAt = "headstart.dev/scaled-at"

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
	if opts.Cooldown == 0 {
		opts.Cooldown = time.Minute
	}
	if opts.MaxResizeFactor <= 1 {
		opts.MaxResizeFactor = 2
	}
	if opts.Now == nil {
		opts.Now = time.Now
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

// Status implements shapers.Shaper: the Deployment's desired and ready
// replicas, and the resources its pods request. It is not converged while
// replicas are not ready or a resize is not applied by the kubelet yet.
func (s *Shaper) Status(ctx context.Context, t shapers.Target) (shapers.Status, error) {
	d, err := s.deployment(ctx, t)
	if err != nil {
		return shapers.Status{}, err
	}
	return s.status(ctx, t, d)
}

func (s *Shaper) deployment(ctx context.Context, t shapers.Target) (*appsv1.Deployment, error) {
	ns, name, err := split(t)
	if err != nil {
		return nil, err
	}
	d, err := s.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%w: %s: %v", shapers.ErrUnknownTarget, t, err)
	}
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", t, err)
	}
	return d, nil
}

func (s *Shaper) status(ctx context.Context, t shapers.Target, d *appsv1.Deployment) (shapers.Status, error) {
	want := 1
	if d.Spec.Replicas != nil {
		want = int(*d.Spec.Replicas)
	}
	st := shapers.Status{Target: t, Replicas: want, Ready: int(d.Status.ReadyReplicas)}
	st.Converged = st.Ready == want && int(d.Status.Replicas) == want && d.Status.ObservedGeneration >= d.Generation
	var msgs []string
	if !st.Converged {
		msgs = append(msgs, fmt.Sprintf("%d of %d replicas ready", st.Ready, want))
	}
	v, pending, err := s.resizeStatus(ctx, d)
	if err != nil {
		return shapers.Status{}, fmt.Errorf("status of %s: %w", t, err)
	}
	st.Resources = v
	if pending != "" {
		st.Converged = false
		msgs = append(msgs, pending)
	}
	st.Message = strings.Join(msgs, "; ")
	return st, nil
}

// Apply implements shapers.Shaper. Replicas are set through the scale
// subresource, bounded by MinReplicas, MaxReplicas and MaxStep, and a
// scale-down waits for the Cooldown after the last change (Status says so);
// Resources resize the pods in place (CPU and memory requests, by at most
// MaxResizeFactor per action). Concurrency is not this shaper's:
// ErrUnsupported. With DryRun the API server validates every change and
// nothing is stored.
func (s *Shaper) Apply(ctx context.Context, a shapers.Action) (shapers.Status, error) {
	if err := a.Validate(); err != nil {
		return shapers.Status{}, err
	}
	ns, name, err := split(a.Target)
	if err != nil {
		return shapers.Status{}, err
	}
	if a.Desired.Concurrency != nil {
		return shapers.Status{}, fmt.Errorf("%w: %s: a pod's concurrency is the worker's own option", shapers.ErrUnsupported, a.Target)
	}
	var held string
	want := 0
	if a.Desired.Replicas != nil {
		if want, held, err = s.scale(ctx, a, ns, name); err != nil {
			return shapers.Status{}, err
		}
	}
	d, err := s.deployment(ctx, a.Target)
	if err != nil {
		return shapers.Status{}, err
	}
	if a.Desired.Resources != nil {
		if err := s.resize(ctx, d, *a.Desired.Resources, a.DryRun); err != nil {
			return shapers.Status{}, fmt.Errorf("%s: %w", a.Target, err)
		}
	}
	st, err := s.status(ctx, a.Target, d)
	if err != nil {
		return st, err
	}
	if held != "" {
		st.Converged = false
		st.Message = strings.TrimPrefix(st.Message+"; "+held, "; ")
	}
	if a.DryRun {
		if a.Desired.Replicas != nil {
			st.Replicas = want
		}
		st.Converged, st.Message = false, "dry run: nothing changed"
	}
	return st, nil
}

// scale sets the Deployment's replicas within the bounds, the step and the
// cooldown; it returns the replicas asked for and, when the cooldown holds
// a scale-down back, why.
func (s *Shaper) scale(ctx context.Context, a shapers.Action, ns, name string) (int, string, error) {
	if err := s.refuseIfAutoscaled(ctx, ns, name); err != nil {
		return 0, "", fmt.Errorf("%s: %w", a.Target, err)
	}
	deployments := s.client.AppsV1().Deployments(ns)
	scale, err := deployments.GetScale(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, "", fmt.Errorf("%w: %s: %v", shapers.ErrUnknownTarget, a.Target, err)
	}
	if err != nil {
		return 0, "", fmt.Errorf("scale of %s: %w", a.Target, err)
	}
	want := min(max(*a.Desired.Replicas, s.opts.MinReplicas), s.opts.MaxReplicas)
	cur := int(scale.Spec.Replicas)
	if s.opts.MaxStep > 0 {
		want = min(max(want, cur-s.opts.MaxStep), cur+s.opts.MaxStep)
	}
	if want == cur {
		return want, "", nil
	}
	now := s.opts.Now()
	if want < cur && s.opts.Cooldown > 0 {
		d, err := deployments.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return 0, "", fmt.Errorf("scale of %s: %w", a.Target, err)
		}
		if at, err := time.Parse(time.RFC3339, d.Annotations[AnnotationScaledAt]); err == nil && now.Before(at.Add(s.opts.Cooldown)) {
			return cur, fmt.Sprintf("scale-down to %d waits for the cooldown until %s", want, at.Add(s.opts.Cooldown).UTC().Format(time.RFC3339)), nil
		}
	}
	dry := []string(nil)
	if a.DryRun {
		dry = []string{metav1.DryRunAll}
	}
	mark, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationScaledAt: now.UTC().Format(time.RFC3339)}}})
	if err != nil {
		return 0, "", err
	}
	if _, err := deployments.Patch(ctx, name, types.MergePatchType, mark, metav1.PatchOptions{FieldManager: s.opts.FieldManager, DryRun: dry}); err != nil {
		return 0, "", fmt.Errorf("mark %s scaled: %w", a.Target, err)
	}
	replicas := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, want)
	if _, err := deployments.Patch(ctx, name, types.MergePatchType, replicas, metav1.PatchOptions{FieldManager: s.opts.FieldManager, DryRun: dry}, "scale"); err != nil {
		return 0, "", fmt.Errorf("scale %s to %d: %w", a.Target, want, err)
	}
	return want, "", nil
}

// ErrAutoscaled is returned for a Deployment that a HorizontalPodAutoscaler
// or a KEDA ScaledObject scales. Headstart refuses rather than fight it:
// give such a stage a minimum through the autoscaler instead.
var ErrAutoscaled = fmt.Errorf("%w: an autoscaler scales this deployment; Headstart will not fight it", shapers.ErrUnsupported)

func (s *Shaper) refuseIfAutoscaled(ctx context.Context, ns, name string) error {
	hpas, err := s.client.AutoscalingV1().HorizontalPodAutoscalers(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list autoscalers: %w", err)
	}
	for _, h := range hpas.Items {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == name {
			return fmt.Errorf("%w (HorizontalPodAutoscaler %s/%s)", ErrAutoscaled, ns, h.Name)
		}
	}
	// KEDA scales through an HPA of its own, but check its ScaledObjects too:
	// the HPA may not exist yet. A cluster without KEDA answers 404.
	body, err := s.client.AppsV1().RESTClient().Get().AbsPath("/apis/keda.sh/v1alpha1/namespaces", ns, "scaledobjects").DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list KEDA scaled objects: %w", err)
	}
	var objs struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct {
				ScaleTargetRef struct{ Kind, Name string }
			}
		}
	}
	if err := json.Unmarshal(body, &objs); err != nil {
		return fmt.Errorf("list KEDA scaled objects: %w", err)
	}
	for _, o := range objs.Items {
		ref := o.Spec.ScaleTargetRef
		if (ref.Kind == "" || ref.Kind == "Deployment") && ref.Name == name {
			return fmt.Errorf("%w (KEDA ScaledObject %s/%s)", ErrAutoscaled, ns, o.Metadata.Name)
		}
	}
	return nil
}
