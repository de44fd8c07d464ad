package kubetest_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
)

// TestDeploymentPodsRunOnFakeNodes: a Deployment scaled to 3 gets 3 pods
// Running on the kwok node — the whole control plane works.
func TestDeploymentPodsRunOnFakeNodes(t *testing.T) {
	start := time.Now()
	p := kubetest.Start(t, "16", "64Gi")
	t.Logf("control plane up with a Ready node in %v", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "stages"}}
	if _, err := p.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := int32(3)
	labels := map[string]string{"app": "train"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: "stages"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Tolerations: []corev1.Toleration{kubetest.Toleration},
					Containers:  []corev1.Container{{Name: "worker", Image: "headstart/worker"}},
				},
			},
		},
	}
	if _, err := p.Client.AppsV1().Deployments("stages").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		pods, err := p.Client.CoreV1().Pods("stages").List(ctx, metav1.ListOptions{LabelSelector: "app=train"})
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, pod := range pods.Items {
			if pod.Status.Phase == corev1.PodRunning && pod.Spec.NodeName != "" {
				running++
			}
		}
		if running == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%d of 3 pods running", running)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
