package kubernetes_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
	"github.com/headstart-dev/headstart/controlplane/shapers/shapertest"
)

// deployment creates a stage worker Deployment (pods labelled app=name),
// each pod requesting req.
func deployment(t *testing.T, p *kubetest.Plane, ns, name string, replicas int32, req corev1.ResourceList) {
	t.Helper()
	ctx := context.Background()
	_, _ = p.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	labels := map[string]string{"app": name}
	_, err := p.Client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Tolerations: []corev1.Toleration{kubetest.Toleration},
					Containers: []corev1.Container{{Name: "worker", Image: "headstart/stage-worker", Resources: corev1.ResourceRequirements{Requests: req}}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeploymentShaperOnARealControlPlane: the shaper passes the conformance
// suite against a real API server (pods Running on kwok nodes), and refuses
// a Deployment an HPA or a KEDA ScaledObject scales.
func TestDeploymentShaperOnARealControlPlane(t *testing.T) {
	p := kubetest.Start(t, "32", "128Gi")
	deployment(t, p, "stages", "train", 0, nil)
	s := kubernetes.New(p.Client, kubernetes.Options{Cooldown: -1})
	shapertest.Run(t, s, shapertest.Options{Target: shapers.Target{Kind: kubernetes.Kind, Name: "stages/train"}})

	deployment(t, p, "stages", "autoscaled", 1, nil)
	ctx := context.Background()
	_, err := p.Client.AutoscalingV1().HorizontalPodAutoscalers("stages").Create(ctx, &autoscalingv1.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "autoscaled", Namespace: "stages"},
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "autoscaled", APIVersion: "apps/v1"},
			MaxReplicas:    5,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Apply(ctx, shapers.Action{Target: shapers.Target{Kind: kubernetes.Kind, Name: "stages/autoscaled"},
		Desired: shapers.Desired{Replicas: shapers.Int(3)}, Reason: "predicted burst"})
	if !errors.Is(err, kubernetes.ErrAutoscaled) {
		t.Fatalf("scaling an HPA's deployment: %v, want ErrAutoscaled", err)
	}

	// KEDA's ScaledObject, before KEDA has made its HPA.
	deployment(t, p, "stages", "keda-scaled", 1, nil)
	dyn := dynamic.NewForConfigOrDie(p.Config)
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "scaledobjects.keda.sh"},
		"spec": map[string]any{
			"group": "keda.sh", "scope": "Namespaced",
			"names": map[string]any{"kind": "ScaledObject", "plural": "scaledobjects", "singular": "scaledobject", "listKind": "ScaledObjectList"},
			"versions": []any{map[string]any{"name": "v1alpha1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
		},
	}}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dyn.Resource(crds).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	scaledObjects := schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	so := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
		"metadata": map[string]any{"name": "temporal-backlog", "namespace": "stages"},
		"spec":     map[string]any{"scaleTargetRef": map[string]any{"name": "keda-scaled"}},
	}}
	waitFor(t, "the ScaledObject CRD to serve", func() bool {
		_, err := dyn.Resource(scaledObjects).Namespace("stages").Create(ctx, so, metav1.CreateOptions{})
		return err == nil
	})
	_, err = s.Apply(ctx, shapers.Action{Target: shapers.Target{Kind: kubernetes.Kind, Name: "stages/keda-scaled"},
		Desired: shapers.Desired{Replicas: shapers.Int(3)}, Reason: "predicted burst"})
	if !errors.Is(err, kubernetes.ErrAutoscaled) || !strings.Contains(err.Error(), "KEDA ScaledObject stages/temporal-backlog") {
		t.Fatalf("scaling a KEDA ScaledObject's deployment: %v, want ErrAutoscaled naming it", err)
	}
	if _, err := s.Apply(ctx, shapers.Action{Target: shapers.Target{Kind: kubernetes.Kind, Name: "stages/train"},
		Desired: shapers.Desired{Replicas: shapers.Int(1)}, Reason: "a deployment no autoscaler scales"}); err != nil {
		t.Fatalf("with KEDA installed, a deployment it does not scale: %v", err)
	}
}

// TestBandwidthAnnotationsOnTheStagesPods: limits land on the pod template
// (and so on new pods), idempotently; a dry run changes nothing; 0 removes.
func TestBandwidthAnnotationsOnTheStagesPods(t *testing.T) {
	p := kubetest.Start(t, "8", "32Gi")
	deployment(t, p, "stages", "fetch", 1, nil)
	s := kubernetes.New(p.Client, kubernetes.Options{})
	ctx := context.Background()
	target := shapers.Target{Kind: kubernetes.Kind, Name: "stages/fetch"}
	annotations := func() map[string]string {
		d, err := p.Client.AppsV1().Deployments("stages").Get(ctx, "fetch", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d.Spec.Template.Annotations
	}
	if err := s.SetBandwidth(ctx, target, 25e6, 12.5e6, true); err != nil {
		t.Fatal(err)
	}
	if len(annotations()) != 0 {
		t.Fatalf("a dry run changed the template: %v", annotations())
	}
	for i := 0; i < 2; i++ {
		if err := s.SetBandwidth(ctx, target, 25e6, 12.5e6, false); err != nil {
			t.Fatal(err)
		}
	}
	got := annotations()
	if got[kubernetes.AnnotationIngressBandwidth] != "200M" || got[kubernetes.AnnotationEgressBandwidth] != "100M" {
		t.Fatalf("annotations %v, want 200M in and 100M out", got)
	}
	if err := s.SetBandwidth(ctx, target, 0, 12.5e6, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := annotations()[kubernetes.AnnotationIngressBandwidth]; ok {
		t.Fatal("a zero limit should remove the ingress annotation")
	}
	if err := s.SetBandwidth(ctx, target, -1, 0, false); !errors.Is(err, shapers.ErrInvalidAction) {
		t.Fatalf("negative bandwidth: %v", err)
	}
}
