// Package shapertest is the conformance suite every shapers.Shaper passes,
// run against the real target wherever one can run in a test.
package shapertest

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/headstart-dev/headstart/controlplane/shapers"
	"github.com/headstart-dev/headstart/resources"
)

// Options describe the shaper under test.
type Options struct {
	// Target the suite may scale freely, starting from zero replicas.
	Target shapers.Target
	// MaxReplicas the suite scales to. If not set, 3.
	MaxReplicas int
	// Converge bounds how long a change may take to show in Status. If not set, 60 s.
	Converge time.Duration
}

// Run checks the contract: validation, dry runs, scaling up and down,
// idempotence, and unknown targets.
func Run(t *testing.T, s shapers.Shaper, opts Options) {
	if opts.MaxReplicas <= 0 {
		opts.MaxReplicas = 3
	}
	if opts.Converge <= 0 {
		opts.Converge = time.Minute
	}
	ctx := context.Background()
	tg := opts.Target
	scale := func(n int, dry bool) shapers.Action {
		return shapers.Action{Target: tg, Desired: shapers.Desired{Replicas: shapers.Int(n)}, Reason: "conformance", DryRun: dry}
	}
	waitReady := func(t *testing.T, n int) shapers.Status {
		t.Helper()
		deadline := time.Now().Add(opts.Converge)
		for {
			st, err := s.Status(ctx, tg)
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if st.Replicas == n && st.Ready == n && st.Converged {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not converge to %d ready replicas within %v: %+v", tg, n, opts.Converge, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("rejects invalid actions", func(t *testing.T) {
		for name, a := range map[string]shapers.Action{
			"negative replicas": {Target: tg, Desired: shapers.Desired{Replicas: shapers.Int(-1)}, Reason: "x"},
			"no reason":         {Target: tg, Desired: shapers.Desired{Replicas: shapers.Int(1)}},
			"no target":         {Desired: shapers.Desired{Replicas: shapers.Int(1)}, Reason: "x"},
		} {
			if _, err := s.Apply(ctx, a); !errors.Is(err, shapers.ErrInvalidAction) {
				t.Errorf("%s: %v, want ErrInvalidAction", name, err)
			}
		}
	})
	t.Run("a dry run changes nothing", func(t *testing.T) {
		before, err := s.Status(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(ctx, scale(opts.MaxReplicas, true)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		after, err := s.Status(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		if after.Replicas != before.Replicas {
			t.Fatalf("dry run changed replicas from %d to %d", before.Replicas, after.Replicas)
		}
	})
	t.Run("scales up, idempotently, and down", func(t *testing.T) {
		if _, err := s.Apply(ctx, scale(opts.MaxReplicas, false)); err != nil {
			t.Fatal(err)
		}
		up := waitReady(t, opts.MaxReplicas)
		again, err := s.Apply(ctx, scale(opts.MaxReplicas, false))
		if err != nil {
			t.Fatal(err)
		}
		if again.Replicas != up.Replicas || again.Ready != up.Ready {
			t.Fatalf("applying the same action twice changed the state: %+v then %+v", up, again)
		}
		if _, err := s.Apply(ctx, scale(1, false)); err != nil {
			t.Fatal(err)
		}
		waitReady(t, 1)
		if _, err := s.Apply(ctx, scale(0, false)); err != nil {
			t.Fatal(err)
		}
		waitReady(t, 0)
	})
	t.Run("unknown kinds are refused", func(t *testing.T) {
		other := shapers.Target{Kind: tg.Kind + "-other", Name: tg.Name}
		if _, err := s.Apply(ctx, shapers.Action{Target: other, Desired: shapers.Desired{Replicas: shapers.Int(1)}, Reason: "x"}); !errors.Is(err, shapers.ErrUnknownTarget) {
			t.Errorf("apply to %s: %v, want ErrUnknownTarget", other, err)
		}
	})
}

// ResourceOptions describe a shaper of each replica's resources (a
// cgroup, a VM) under test.
type ResourceOptions struct {
	// Target the suite may shape freely.
	Target shapers.Target
	// First and Second are two sets of limits the suite moves the target
	// between; every kind set in one is set in the other.
	First, Second resources.Vector
	// Converge bounds how long a change may take to show in Status. If not set, 60 s.
	Converge time.Duration
}

// RunResources checks the contract for a shaper of resources: validation,
// dry runs, reaching limits and reading them back, idempotence, and
// unknown targets.
func RunResources(t *testing.T, s shapers.Shaper, opts ResourceOptions) {
	if opts.Converge <= 0 {
		opts.Converge = time.Minute
	}
	ctx := context.Background()
	tg := opts.Target
	shape := func(v resources.Vector, dry bool) shapers.Action {
		return shapers.Action{Target: tg, Desired: shapers.Desired{Resources: &v}, Reason: "conformance", DryRun: dry}
	}
	reach := func(t *testing.T, v resources.Vector) shapers.Status {
		t.Helper()
		deadline := time.Now().Add(opts.Converge)
		for {
			st, err := s.Status(ctx, tg)
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if st.Converged {
				for _, k := range resources.Kinds() {
					if want := v.Get(k); want > 0 && math.Abs(st.Resources.Get(k)-want) > 0.01*want {
						t.Fatalf("%s converged with %s %v, asked for %v", tg, k, st.Resources.Get(k), want)
					}
				}
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach %v within %v: %+v", tg, v, opts.Converge, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("rejects invalid actions", func(t *testing.T) {
		if _, err := s.Apply(ctx, shapers.Action{Target: tg, Desired: shapers.Desired{Resources: &opts.First}}); !errors.Is(err, shapers.ErrInvalidAction) {
			t.Errorf("no reason: %v, want ErrInvalidAction", err)
		}
		if _, err := s.Apply(ctx, shapers.Action{Desired: shapers.Desired{Resources: &opts.First}, Reason: "x"}); !errors.Is(err, shapers.ErrInvalidAction) && !errors.Is(err, shapers.ErrUnknownTarget) {
			t.Errorf("no target: %v, want ErrInvalidAction or ErrUnknownTarget", err)
		}
	})
	t.Run("a dry run changes nothing", func(t *testing.T) {
		before, err := s.Status(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.Apply(ctx, shape(opts.First, true))
		if err != nil {
			t.Fatal(err)
		}
		if st.Message == "" {
			t.Error("a dry run should say what it would change")
		}
		after, err := s.Status(ctx, tg)
		if err != nil {
			t.Fatal(err)
		}
		if after.Resources != before.Resources {
			t.Fatalf("dry run changed the limits from %v to %v", before.Resources, after.Resources)
		}
	})
	t.Run("reaches limits, idempotently, and changes them", func(t *testing.T) {
		if _, err := s.Apply(ctx, shape(opts.First, false)); err != nil {
			t.Fatal(err)
		}
		first := reach(t, opts.First)
		again, err := s.Apply(ctx, shape(opts.First, false))
		if err != nil {
			t.Fatal(err)
		}
		if again.Resources != first.Resources || !again.Converged {
			t.Fatalf("applying the same action twice changed the state: %+v then %+v", first, again)
		}
		if _, err := s.Apply(ctx, shape(opts.Second, false)); err != nil {
			t.Fatal(err)
		}
		reach(t, opts.Second)
	})
	t.Run("unknown kinds are refused", func(t *testing.T) {
		other := shapers.Target{Kind: tg.Kind + "-other", Name: tg.Name}
		if _, err := s.Apply(ctx, shapers.Action{Target: other, Desired: shapers.Desired{Resources: &opts.First}, Reason: "x"}); !errors.Is(err, shapers.ErrUnknownTarget) {
			t.Errorf("apply to %s: %v, want ErrUnknownTarget", other, err)
		}
	})
}
