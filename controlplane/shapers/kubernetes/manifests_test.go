package kubernetes_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/headstart-dev/headstart/controlplane/internal/kubetest"
	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/controlplane/shapers/kubernetes"
	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/resources"
)

// manifests renders deploy/kubernetes with kustomize, as kubectl apply -k
// does, and returns its objects in order.
func manifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	out := kubetest.Kustomize(t, filepath.Join(temporaltest.RepoRoot(), "deploy", "kubernetes"))
	var objs []*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		o := &unstructured.Unstructured{}
		if err := dec.Decode(&o.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("kustomize build deploy/kubernetes: %v", err)
		}
		if len(o.Object) > 0 {
			objs = append(objs, o)
		}
	}
	if len(objs) < 10 {
		t.Fatalf("kustomize rendered %d objects", len(objs))
	}
	return objs
}

// apply applies objs with server-side apply, as a dry run when asked; the
// Namespace always for real, since nothing in it can be checked otherwise.
func apply(t *testing.T, p *kubetest.Plane, objs []*unstructured.Unstructured, dryRun bool) {
	t.Helper()
	ctx := context.Background()
	dyn := dynamic.NewForConfigOrDie(p.Config)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(p.Client.Discovery()))
	for _, o := range objs {
		m, err := mapper.RESTMapping(o.GroupVersionKind().GroupKind(), o.GroupVersionKind().Version)
		if err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
		opts := metav1.ApplyOptions{FieldManager: "headstart-manifests-test", Force: true}
		if dryRun && o.GetKind() != "Namespace" {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			r = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := r.Apply(ctx, o.GetName(), o, opts); err != nil {
			t.Fatalf("apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// TestManifestsApplyAndTheRoleIsLeastPrivilege: every object in
// deploy/kubernetes passes a server-side dry run on the real API server;
// applied, the ServiceAccount's Role lets the shaper do everything it does
// (the test impersonates the ServiceAccount) and denies what it does not.
func TestManifestsApplyAndTheRoleIsLeastPrivilege(t *testing.T) {
	p := kubetest.Start(t, "16", "64Gi")
	ctx := context.Background()
	objs := manifests(t)
	apply(t, p, objs, true)
	if _, err := p.Client.CoreV1().ServiceAccounts("headstart").Get(ctx, "headstart", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after a dry run the ServiceAccount exists (%v)", err)
	}
	apply(t, p, objs, false)

	// The example stage worker, scheduled onto the fake node.
	stage := []byte(`{"spec":{"template":{"spec":{"tolerations":[{"key":"kwok.x-k8s.io/node","operator":"Equal","value":"fake","effect":"NoSchedule"}]}}}}`)
	if _, err := p.Client.AppsV1().Deployments("headstart").Patch(ctx, "pipeline-train", "application/merge-patch+json", stage, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	as := rest.CopyConfig(p.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:headstart:headstart"}
	client := k8s.NewForConfigOrDie(as)
	s := kubernetes.New(client, kubernetes.Options{Cooldown: -1,
		Placeholders: kubernetes.Placeholders{Namespace: "headstart", Tolerations: []corev1.Toleration{kubetest.Toleration}}})
	target := shapers.Target{Kind: kubernetes.Kind, Name: "headstart/pipeline-train"}

	// Everything the shaper does, as the ServiceAccount.
	if err := s.EnsurePriorityClass(ctx); err != nil {
		t.Fatalf("ensure priority class: %v", err)
	}
	if _, err := s.Apply(ctx, shapers.Action{Target: target, Desired: shapers.Desired{Replicas: shapers.Int(2)}, Reason: "predicted burst", DryRun: true}); err != nil {
		t.Fatalf("dry-run scale: %v", err)
	}
	if _, err := s.Apply(ctx, shapers.Action{Target: target, Desired: shapers.Desired{Replicas: shapers.Int(2)}, Reason: "predicted burst"}); err != nil {
		t.Fatalf("scale: %v", err)
	}
	waitConverged(t, s, target)
	big := resources.Vector{}.With(resources.CPU, 2).With(resources.Memory, 2<<30)
	if _, err := s.Apply(ctx, shapers.Action{Target: target, Desired: shapers.Desired{Resources: &big}, Reason: "predicted 2 CPU / 2 GiB"}); err != nil {
		t.Fatalf("resize: %v", err)
	}
	if err := s.SetBandwidth(ctx, target, 1e6, 1e6, false); err != nil {
		t.Fatalf("bandwidth: %v", err)
	}
	if err := s.Hold(ctx, shapers.Hold{Key: "prefetch/train/1", Stage: "Pipeline/Train", Resources: resources.Vector{}.With(resources.CPU, 1), Replicas: 1}); err != nil {
		t.Fatalf("hold: %v", err)
	}
	if err := s.Release(ctx, "prefetch/train/1"); err != nil {
		t.Fatalf("release: %v", err)
	}
	waitConverged(t, s, target)
	if c, err := s.Capacity(ctx, ""); err != nil || c.Machines != 1 {
		t.Fatalf("measure the pool: %+v, %v", c, err)
	}
	if _, err := s.Migrate(ctx, shapers.Migration{Target: target, From: "kwok-node-0", Reason: "node running hot", DryRun: true}); err != nil {
		t.Fatalf("migrate: %v", err)
	}

	// And nothing more.
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s as the ServiceAccount: %v, want forbidden", what, err)
		}
	}
	pods, err := p.Client.CoreV1().Pods("headstart").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=pipeline-train"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("stage pods: %v", err)
	}
	forbidden("delete a pod", client.CoreV1().Pods("headstart").Delete(ctx, pods.Items[0].Name, metav1.DeleteOptions{}))
	_, err = client.CoreV1().Secrets("headstart").List(ctx, metav1.ListOptions{})
	forbidden("list secrets", err)
	_, err = client.AppsV1().Deployments("default").Get(ctx, "anything", metav1.GetOptions{})
	forbidden("read a deployment in another namespace", err)
	_, err = client.CoreV1().Nodes().Patch(ctx, "kwok-node-0", "application/merge-patch+json", []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
	forbidden("cordon a node", err)
	_, err = client.CoreV1().Pods("default").Get(ctx, "anything", metav1.GetOptions{})
	forbidden("read a pod outside its namespace (listing is all it may do)", err)
	_, err = client.PolicyV1().PodDisruptionBudgets("headstart").Update(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "pipeline-train", Namespace: "headstart"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromInt32(3))}}, metav1.UpdateOptions{})
	forbidden("loosen the disruption budget", err)
}
