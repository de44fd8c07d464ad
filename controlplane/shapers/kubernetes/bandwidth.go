package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/headstart-dev/headstart/controlplane/shapers"
)

// The pod annotations the bandwidth CNI plugin reads.
const (
	AnnotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	AnnotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

// SetBandwidth shapes a stage's network: it sets the ingress and egress
// bandwidth annotations on its Deployment's pod template (bits per second,
// from bytes per second; 0 removes a limit). Applying the same limits again
// changes nothing; new limits roll the pods, as any template change does.
func (s *Shaper) SetBandwidth(ctx context.Context, t shapers.Target, ingressBytesPerSec, egressBytesPerSec float64, dryRun bool) error {
	ns, name, err := split(t)
	if err != nil {
		return err
	}
	if ingressBytesPerSec < 0 || egressBytesPerSec < 0 {
		return fmt.Errorf("%w: %s: negative bandwidth", shapers.ErrInvalidAction, t)
	}
	value := func(bps float64) any {
		if bps == 0 {
			return nil // a JSON merge patch null removes the annotation
		}
		return fmt.Sprintf("%dM", max(int64(bps*8/1e6), 1))
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]any{AnnotationIngressBandwidth: value(ingressBytesPerSec), AnnotationEgressBandwidth: value(egressBytesPerSec)},
	}}}})
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: s.opts.FieldManager}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := s.client.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, patch, opts); err != nil {
		return fmt.Errorf("set bandwidth of %s: %w", t, err)
	}
	return nil
}
