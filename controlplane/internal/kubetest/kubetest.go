// Package kubetest starts a real Kubernetes control plane for tests on
// 127.0.0.1 — etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, and kwok's fake nodes and kubelet — from binaries that
// scripts/build-kubernetes.sh builds once into a cache (see
// ../shared/KUBERNETES.md), and stops it when the test ends.
package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/headstart-dev/headstart/internal/temporaltest"
	"github.com/headstart-dev/headstart/internal/testproc"
)

// KwokVersion is the kwok whose stages (fake kubelet behaviour) are used.
const KwokVersion = "v0.8.0"

// NodeTaint is the taint on kwok's fake nodes: pods need a toleration for it.
var NodeTaint = corev1.Taint{Key: "kwok.x-k8s.io/node", Value: "fake", Effect: corev1.TaintEffectNoSchedule}

// Toleration lets a pod onto kwok's fake nodes.
var Toleration = corev1.Toleration{Key: NodeTaint.Key, Operator: corev1.TolerationOpEqual, Value: NodeTaint.Value, Effect: NodeTaint.Effect}

// Plane is a running control plane.
type Plane struct {
	Config     *rest.Config
	Client     kubernetes.Interface
	Kubeconfig string
	dir        string
	procs      []*testproc.Proc
}

// startAttempts is how many times Start brings the control plane up when a
// part exits while starting (a port taken between testproc.FreePort and the
// server's bind, say).
const startAttempts = 2

// readyTimeout bounds the wait for the API server once it has started.
const readyTimeout = 3 * time.Minute

// Start brings up a control plane with one fake node of the given capacity
// and waits until the node is Ready. It fails the test when a part cannot start.
func Start(t testing.TB, nodeCPU, nodeMemory string) *Plane {
	t.Helper()
	// A cold build of the binaries takes about 18 minutes.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bins := binaries(ctx, t)
	kwokStages := stages(ctx, t)
	var err error
	for attempt := 1; attempt <= startAttempts; attempt++ {
		p := &Plane{dir: t.TempDir()}
		// Registered first: start may fail the test with processes running.
		t.Cleanup(p.stop)
		if err = p.start(t, bins, kwokStages); err == nil {
			p.AddNode(t, "kwok-node-0", nodeCPU, nodeMemory)
			return p
		}
		p.stop() // free its ports before the next attempt
		t.Logf("kubetest: attempt %d of %d: %v", attempt, startAttempts, err)
	}
	t.Fatalf("kubetest: the control plane did not start: %v", err)
	return nil
}

// start runs the control plane's processes and waits for the API server.
func (p *Plane) start(t testing.TB, bins string, kwokStages []string) error {
	t.Helper()
	p.certs(t)
	etcdPort, peerPort, apiPort := testproc.FreePort(t), testproc.FreePort(t), testproc.FreePort(t)
	if err := p.run("etcd", filepath.Join(bins, "etcd"), "--data-dir="+filepath.Join(p.dir, "etcd"), "--unsafe-no-fsync",
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdPort), fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdPort),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", peerPort), fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", peerPort),
		fmt.Sprintf("--initial-cluster=default=http://127.0.0.1:%d", peerPort), "--log-level=warn"); err != nil {
		return err
	}
	d := p.dir
	if err := p.run("kube-apiserver", filepath.Join(bins, "kube-apiserver"),
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort), "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort), "--endpoint-reconciler-type=none",
		"--tls-cert-file="+d+"/apiserver.crt", "--tls-private-key-file="+d+"/apiserver.key", "--client-ca-file="+d+"/ca.crt",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+d+"/sa.pub",
		"--service-account-signing-key-file="+d+"/sa.key", "--service-cluster-ip-range=10.96.0.0/24",
		"--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount"); err != nil {
		return err
	}
	p.Kubeconfig = filepath.Join(d, "admin.kubeconfig")
	p.writeKubeconfig(t, apiPort)
	cfg, err := clientcmd.BuildConfigFromFlags("", p.Kubeconfig)
	if err != nil {
		return err
	}
	p.Config = cfg
	if p.Client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := p.waitFor(ctx, "the API server to be ready", func() bool {
		body, err := p.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && strings.TrimSpace(string(body)) == "ok"
	}); err != nil {
		return err
	}
	auth := []string{"--kubeconfig=" + p.Kubeconfig, "--authentication-kubeconfig=" + p.Kubeconfig, "--authorization-kubeconfig=" + p.Kubeconfig,
		"--bind-address=127.0.0.1", "--leader-elect=false"}
	if err := p.run("kube-controller-manager", filepath.Join(bins, "kube-controller-manager"),
		append(auth, fmt.Sprintf("--secure-port=%d", testproc.FreePort(t)), "--service-account-private-key-file="+d+"/sa.key", "--root-ca-file="+d+"/ca.crt")...); err != nil {
		return err
	}
	if err := p.run("kube-scheduler", filepath.Join(bins, "kube-scheduler"), append(auth, fmt.Sprintf("--secure-port=%d", testproc.FreePort(t)))...); err != nil {
		return err
	}
	kwokArgs := []string{"--kubeconfig=" + p.Kubeconfig, "--manage-all-nodes=true", fmt.Sprintf("--server-address=127.0.0.1:%d", testproc.FreePort(t))}
	for _, s := range append(kwokStages, p.resizeStage(t)) {
		kwokArgs = append(kwokArgs, "--config="+s)
	}
	return p.run("kwok", filepath.Join(bins, "kwok"), kwokArgs...)
}

// AddNode adds a fake node of the given capacity, tainted with NodeTaint,
// and waits until it is Ready.
func (p *Plane) AddNode(t testing.TB, name, cpu, memory string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(memory), corev1.ResourcePods: resource.MustParse("110")}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"type": "kwok", corev1.LabelHostname: name},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}},
		Spec:   corev1.NodeSpec{Taints: []corev1.Taint{NodeTaint}},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	if _, err := p.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatalf("kubetest: create node %s: %v", name, err)
	}
	if err := p.waitFor(ctx, "node "+name+" to be Ready", func() bool {
		n, err := p.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
}

func (p *Plane) run(name, bin string, args ...string) error {
	proc, err := testproc.Start(name, bin, args...)
	if err != nil {
		return err
	}
	p.procs = append(p.procs, proc)
	return nil
}

// waitFor polls cond until it holds, the context ends, or a process exits.
func (p *Plane) waitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		if ctx.Err() != nil {
			return fmt.Errorf("timed out waiting for %s\n%s", what, p.tails())
		}
		for _, c := range p.procs {
			if err := c.Exited(); err != nil {
				return fmt.Errorf("%w while waiting for %s\n%s", err, what, p.tails())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func (p *Plane) tails() string {
	var b strings.Builder
	for _, c := range p.procs {
		fmt.Fprintf(&b, "--- %s\n%s\n", c.Name, c.Log.Tail(1500))
	}
	return b.String()
}

// stop ends the processes newest first; stopping twice is harmless.
func (p *Plane) stop() {
	for i := len(p.procs) - 1; i >= 0; i-- {
		p.procs[i].Stop(10 * time.Second)
	}
}

// Kustomize renders a kustomization folder with the cached kustomize, as
// kubectl apply -k does, and returns the YAML stream.
func Kustomize(t testing.TB, dir string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(binaries(ctx, t), "kustomize"), "build", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubetest: kustomize build %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// binaries returns the folder of the control plane's binaries, building them if needed.
func binaries(ctx context.Context, t testing.TB) string {
	script := filepath.Join(temporaltest.RepoRoot(), "scripts", "build-kubernetes.sh")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, script)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubetest: %s: %v\n%s", script, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// stages returns kwok's "fast" node and pod stages from its module.
func stages(ctx context.Context, t testing.TB) []string {
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/kwok@"+KwokVersion).Output()
	if err != nil {
		t.Fatalf("kubetest: download kwok %s: %v", KwokVersion, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, g := range []string{"kustomize/stage/node/fast/*.yaml", "kustomize/stage/pod/fast/*.yaml"} {
		m, _ := filepath.Glob(filepath.Join(mod.Dir, g))
		for _, f := range m {
			if filepath.Base(f) != "kustomization.yaml" {
				files = append(files, f)
			}
		}
	}
	if len(files) == 0 {
		t.Fatalf("kubetest: no kwok stages in %s", mod.Dir)
	}
	return files
}

// resizeStage writes a kwok stage that plays the kubelet's part in an
// in-place resize: when a running pod's container resources differ from
// those its status reports, it reports the spec's as allocated and applied.
// (Stock kwok stages never reflect a resize; the first pass also fills the
// status of a new pod.)
func (p *Plane) resizeStage(t testing.TB) string {
	t.Helper()
	const stage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: headstart-pod-resize
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '[.spec.containers[] | [.resources.requests // {}, .resources.limits // {}]] == [.status.containerStatuses[]? | [.resources.requests // {}, .resources.limits // {}]]'
      operator: 'In'
      values: ['false']
  next:
    statusTemplate: |
      containerStatuses:
      {{ range $i, $c := .status.containerStatuses }}
      {{ $s := index $.spec.containers $i }}
      {{ $r := dict "requests" (default (dict) $s.resources.requests) "limits" (default (dict) $s.resources.limits) }}
      - {{ merge (dict "resources" $r "allocatedResources" (default (dict) $s.resources.requests)) $c | toJson }}
      {{ end }}
`
	f := filepath.Join(p.dir, "kwok-pod-resize.yaml")
	if err := os.WriteFile(f, []byte(stage), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// certs makes a CA, the API server's serving certificate, an admin client
// certificate in system:masters and a service-account key pair.
func (p *Plane) certs(t testing.TB) {
	t.Helper()
	d := p.dir
	ssl := func(args ...string) {
		cmd := exec.Command("openssl", args...)
		cmd.Dir = d
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubetest: openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ext := filepath.Join(d, "san.ext")
	if err := os.WriteFile(ext, []byte("subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1\nextendedKeyUsage=serverAuth\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=headstart-test-ca")
	ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver")
	ssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "apiserver.crt", "-days", "2", "-extfile", "san.ext")
	ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "admin.key", "-out", "admin.csr", "-subj", "/O=system:masters/CN=admin")
	ssl("x509", "-req", "-in", "admin.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "admin.crt", "-days", "2")
	ssl("genrsa", "-out", "sa.key", "2048")
	ssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
}

func (p *Plane) writeKubeconfig(t testing.TB, port int) {
	t.Helper()
	d := p.dir
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:%d
    certificate-authority: %s/ca.crt
users:
- name: admin
  user:
    client-certificate: %s/admin.crt
    client-key: %s/admin.key
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, port, d, d, d)
	if err := os.WriteFile(p.Kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}
