package kubernetes

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// PlaceholderPriorityClass is the PriorityClass of placeholder pods: below
// every worker's (default 0), so the scheduler preempts them the moment real
// work needs their room — the cluster overprovisioner's pattern.
const PlaceholderPriorityClass = "headstart-placeholder"

// PlaceholderPriority is its value.
const PlaceholderPriority = -10

// Labels on every object Headstart creates, to find and clean them up.
const (
	LabelManagedBy   = "app.kubernetes.io/managed-by"
	LabelReservation = "headstart.dev/reservation"
	LabelStage       = "headstart.dev/stage"
)

// Placeholders configure how the shaper holds soft reservations: as
// low-priority placeholder pods.
type Placeholders struct {
	// Namespace the placeholders run in.
	Namespace string
	// Image of the placeholder container; it only needs to sleep. If not set, "registry.k8s.io/pause:3.10".
	Image string
	// Tolerations the placeholder pods carry (e.g. for dedicated nodes).
	Tolerations []corev1.Toleration
}

// EnsurePriorityClass creates the placeholder PriorityClass if it is
// missing. Where deploy/kubernetes installed it, this only reads it (the
// Role there grants nothing more).
func (s *Shaper) EnsurePriorityClass(ctx context.Context) error {
	if _, err := s.client.SchedulingV1().PriorityClasses().Get(ctx, PlaceholderPriorityClass, metav1.GetOptions{}); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get priority class %s: %w", PlaceholderPriorityClass, err)
	}
	pc := &schedulingv1.PriorityClass{
		ObjectMeta:       metav1.ObjectMeta{Name: PlaceholderPriorityClass, Labels: map[string]string{LabelManagedBy: "headstart"}},
		Value:            PlaceholderPriority,
		PreemptionPolicy: ptr(corev1.PreemptNever),
		Description:      "Headstart's placeholder pods: capacity held for predicted stages, given up to any real work.",
	}
	_, err := s.client.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{FieldManager: s.opts.FieldManager})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create priority class %s: %w", PlaceholderPriorityClass, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// owners returns the owner references of the objects Headstart creates.
func (s *Shaper) owners() []metav1.OwnerReference {
	if s.opts.Owner == nil {
		return nil
	}
	return []metav1.OwnerReference{*s.opts.Owner}
}

// reservationName turns a reservation key into a valid object name.
func reservationName(key string) string {
	r := strings.NewReplacer("/", "-", ":", "-", "_", "-", ".", "-")
	n := strings.ToLower(r.Replace(key))
	if len(n) > 50 {
		n = n[:50]
	}
	return "headstart-hold-" + strings.Trim(n, "-")
}

var _ shapers.Reserver = (*Shaper)(nil)

// Hold implements shapers.Reserver: it holds h.Replicas × h.Resources (CPU
// and memory) for a stage as placeholder pods in Options.Placeholders'
// namespace — a Deployment named after the key, labelled, owned by
// Options.Owner if set (which must then live in that namespace), and
// idempotent: holding the same key again changes nothing.
func (s *Shaper) Hold(ctx context.Context, h shapers.Hold) error {
	if err := h.Validate(); err != nil {
		return err
	}
	p := s.opts.Placeholders
	if p.Namespace == "" {
		return fmt.Errorf("%w: hold %s: Options.Placeholders.Namespace is not set", shapers.ErrUnsupported, h.Key)
	}
	key, stage, per, replicas := h.Key, h.Stage, h.Resources, h.Replicas
	image := p.Image
	if image == "" {
		image = "registry.k8s.io/pause:3.10"
	}
	name := reservationName(key)
	labels := map[string]string{LabelManagedBy: "headstart", LabelReservation: name}
	n := int32(replicas)
	req := corev1.ResourceList{}
	if c := per.Get(resources.CPU); c > 0 {
		req[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(c*1000), resource.DecimalSI)
	}
	if m := per.Get(resources.Memory); m > 0 {
		req[corev1.ResourceMemory] = *resource.NewQuantity(int64(m), resource.BinarySI)
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: p.Namespace, Labels: labels, OwnerReferences: s.owners(),
			Annotations: map[string]string{LabelStage: stage, "headstart.dev/key": key}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					PriorityClassName:             PlaceholderPriorityClass,
					TerminationGracePeriodSeconds: ptr(int64(0)),
					Tolerations:                   p.Tolerations,
					Containers:                    []corev1.Container{{Name: "hold", Image: image, Resources: corev1.ResourceRequirements{Requests: req, Limits: req}}},
				},
			},
		},
	}
	_, err := s.client.AppsV1().Deployments(p.Namespace).Create(ctx, d, metav1.CreateOptions{FieldManager: s.opts.FieldManager})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hold %s: %w", key, err)
	}
	return nil
}

// Release implements shapers.Reserver: it removes a hold's placeholders;
// releasing one not held is not an error.
func (s *Shaper) Release(ctx context.Context, key string) error {
	p := s.opts.Placeholders
	if p.Namespace == "" {
		return fmt.Errorf("%w: release %s: Options.Placeholders.Namespace is not set", shapers.ErrUnsupported, key)
	}
	err := s.client.AppsV1().Deployments(p.Namespace).Delete(ctx, reservationName(key), metav1.DeleteOptions{PropagationPolicy: ptr(metav1.DeletePropagationForeground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release %s: %w", key, err)
	}
	return nil
}
