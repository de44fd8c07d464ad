package kubernetes_test

import (
	"context"
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart/internal/kubetest"
	"github.com/headstart-dev/headstart/shapers"
	"github.com/headstart-dev/headstart/shapers/kubernetes"
	"github.com/headstart-dev/headstart/shapers/shapertest"
)

func deployment(t *testing.T, p *kubetest.Plane, ns, name string, replicas int32) {
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
					Containers: []corev1.Container{{Name: "worker", Image: "headstart/stage-worker"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeploymentShaperOnARealControlPlane: the shaper passes the conformance
// suite against a real API server (pods Running on kwok nodes), and refuses
// a Deployment an HPA scales.
func TestDeploymentShaperOnARealControlPlane(t *testing.T) {
	p := kubetest.Start(t, "32", "128Gi")
	deployment(t, p, "stages", "train", 0)
	s := kubernetes.New(p.Client, kubernetes.Options{})
	shapertest.Run(t, s, shapertest.Options{Target: shapers.Target{Kind: kubernetes.Kind, Name: "stages/train"}})

	deployment(t, p, "stages", "autoscaled", 1)
	_, err := p.Client.AutoscalingV1().HorizontalPodAutoscalers("stages").Create(context.Background(), &autoscalingv1.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "autoscaled", Namespace: "stages"},
		Spec: autoscalingv1.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "autoscaled", APIVersion: "apps/v1"},
			MaxReplicas:    5,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Apply(context.Background(), shapers.Action{Target: shapers.Target{Kind: kubernetes.Kind, Name: "stages/autoscaled"},
		Desired: shapers.Desired{Replicas: shapers.Int(3)}, Reason: "predicted burst"})
	if !errors.Is(err, kubernetes.ErrAutoscaled) {
		t.Fatalf("scaling an HPA's deployment: %v, want ErrAutoscaled", err)
	}
}
