package kubernetes

import (
	"context"
	"fmt"
	"math"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// podsOf lists the live (not terminating) pods a Deployment selects.
func (s *Shaper) podsOf(ctx context.Context, d *appsv1.Deployment) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of %s/%s: %w", d.Namespace, d.Name, err)
	}
	list, err := s.client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("pods of %s/%s: %w", d.Namespace, d.Name, err)
	}
	pods := list.Items[:0]
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods, nil
}

// container returns the index of the container the shaper resizes in pod: the
// one named Options.Container, or the first.
func (s *Shaper) container(spec *corev1.PodSpec) (int, error) {
	if s.opts.Container == "" && len(spec.Containers) > 0 {
		return 0, nil
	}
	for i, c := range spec.Containers {
		if c.Name == s.opts.Container {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: no container %q", shapers.ErrUnknownTarget, s.opts.Container)
}

// requested reads a container's CPU and memory requests as a Vector.
func requested(c corev1.ResourceRequirements) resources.Vector {
	var v resources.Vector
	if q, ok := c.Requests[corev1.ResourceCPU]; ok {
		v = v.With(resources.CPU, float64(q.MilliValue())/1000)
	}
	if q, ok := c.Requests[corev1.ResourceMemory]; ok {
		v = v.With(resources.Memory, float64(q.Value()))
	}
	return v
}

// step moves from cur towards want by at most a factor f either way; a
// resource not yet requested jumps straight to want.
func step(cur, want, f float64) float64 {
	if cur <= 0 || f <= 1 {
		return want
	}
	return math.Min(math.Max(want, cur/f), cur*f)
}

// resized returns the container's resources moved towards want (CPU and
// memory requests; a limit keeps its ratio to its request) and whether
// anything changed.
func (s *Shaper) resized(c corev1.ResourceRequirements, want resources.Vector) (corev1.ResourceRequirements, bool) {
	out := *c.DeepCopy()
	if out.Requests == nil {
		out.Requests = corev1.ResourceList{}
	}
	cur := requested(c)
	changed := false
	set := func(name corev1.ResourceName, r resources.Kind, q func(float64) resource.Quantity) {
		w := want.Get(r)
		if w <= 0 {
			return
		}
		next := q(step(cur.Get(r), w, s.opts.MaxResizeFactor))
		old, had := c.Requests[name]
		if had && old.Cmp(next) == 0 {
			return
		}
		out.Requests[name] = next
		if lim, ok := c.Limits[name]; ok && had && old.Sign() > 0 {
			ratio := lim.AsApproximateFloat64() / old.AsApproximateFloat64()
			out.Limits[name] = q(next.AsApproximateFloat64() * math.Max(ratio, 1))
		}
		changed = true
	}
	set(corev1.ResourceCPU, resources.CPU, func(v float64) resource.Quantity {
		return *resource.NewMilliQuantity(int64(math.Ceil(v*1000)), resource.DecimalSI)
	})
	set(corev1.ResourceMemory, resources.Memory, func(v float64) resource.Quantity {
		return *resource.NewQuantity(int64(math.Ceil(v)), resource.BinarySI)
	})
	return out, changed
}

// resize brings the CPU and memory requests of every pod of d towards want
// through the pods' resize subresource (in-place pod vertical scaling), by
// at most MaxResizeFactor per action. Pods already there are left alone.
func (s *Shaper) resize(ctx context.Context, d *appsv1.Deployment, want resources.Vector, dryRun bool) error {
	pods, err := s.podsOf(ctx, d)
	if err != nil {
		return err
	}
	for i := range pods {
		pod := &pods[i]
		ci, err := s.container(&pod.Spec)
		if err != nil {
			return fmt.Errorf("resize %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		next, changed := s.resized(pod.Spec.Containers[ci].Resources, want)
		if !changed {
			continue
		}
		pod.Spec.Containers[ci].Resources = next
		opts := metav1.UpdateOptions{FieldManager: s.opts.FieldManager}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := s.client.CoreV1().Pods(pod.Namespace).UpdateResize(ctx, pod.Name, pod, opts); err != nil {
			return fmt.Errorf("resize %s/%s: %w", pod.Namespace, pod.Name, err)
		}
	}
	return nil
}

// resizeStatus reports the resources the pods of d request (those of the
// first pod) and how many of the running ones the kubelet has not applied yet: their
// container status still shows other resources, or a resize is pending.
func (s *Shaper) resizeStatus(ctx context.Context, d *appsv1.Deployment) (resources.Vector, string, error) {
	pods, err := s.podsOf(ctx, d)
	if err != nil {
		return resources.Vector{}, "", err
	}
	var v resources.Vector
	pending, reason := 0, ""
	for i, pod := range pods {
		ci, err := s.container(&pod.Spec)
		if err != nil {
			return resources.Vector{}, "", fmt.Errorf("%s/%s: %w", pod.Namespace, pod.Name, err)
		}
		spec := pod.Spec.Containers[ci]
		if i == 0 {
			v = requested(spec.Resources)
		}
		if pod.Status.Phase != corev1.PodRunning || applied(pod, spec) {
			continue
		}
		pending++
		for _, c := range pod.Status.Conditions {
			if (c.Type == corev1.PodResizePending || c.Type == corev1.PodResizeInProgress) && c.Message != "" {
				reason = fmt.Sprintf(" (%s: %s)", c.Reason, c.Message)
			}
		}
	}
	if pending == 0 {
		return v, "", nil
	}
	return v, fmt.Sprintf("resize of %d of %d pods not applied by the kubelet yet%s", pending, len(pods), reason), nil
}

// applied tells whether the kubelet reports the container running with the
// requests its spec asks for.
func applied(pod corev1.Pod, spec corev1.Container) bool {
	for _, st := range pod.Status.ContainerStatuses {
		if st.Name != spec.Name {
			continue
		}
		if st.Resources == nil {
			return len(spec.Resources.Requests) == 0
		}
		for name, q := range spec.Resources.Requests {
			got, ok := st.Resources.Requests[name]
			if !ok || got.Cmp(q) != 0 {
				return false
			}
		}
		return true
	}
	return false
}
