package coordinator

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/headstart-dev/headstart"
	"github.com/headstart-dev/headstart/controlplane/shapers"
)

// FuzzConfigure: whatever a configure update carries, the validator accepts
// a configuration the coordinator runs with (its defaults fill in), or
// rejects it with ErrInvalidConfig and one *headstart.FieldError per problem.
func FuzzConfigure(f *testing.F) {
	good, _ := json.Marshal(trainConfig(ModePrefetch))
	f.Add(good)
	f.Add([]byte(`{"Mode":"yolo","Interval":-1,"Rule":{"MinConfidence":2},"Replicate":[{"Stage":""},{"Stage":""}]}`))
	f.Add([]byte(`{"Measure":{"With":""},"Replication":{"Levels":[3,1,-2]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		if json.Unmarshal(b, &c) != nil {
			return // the SDK refuses what does not decode before any validator
		}
		err := c.Validate()
		if err == nil {
			d := c.withDefaults()
			if d.Interval <= 0 || d.Mode == "" || d.Pool == "" {
				t.Fatalf("a valid configuration without its essentials: %+v", d)
			}
			return
		}
		if !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("untyped error: %v", err)
		}
		var fe *headstart.FieldError
		if !errors.As(err, &fe) || fe.Field == "" {
			t.Fatalf("no field named: %v", err)
		}
	})
}

// FuzzRebalance: a rebalance update's migration is valid or refused with
// shapers.ErrInvalidAction.
func FuzzRebalance(f *testing.F) {
	f.Add("deployment", "stages/train", "node-1", "hot", false)
	f.Add("", "", "", "", true)
	f.Fuzz(func(t *testing.T, kind, name, from, reason string, dry bool) {
		m := shapers.Migration{Target: shapers.Target{Kind: kind, Name: name}, From: from, Reason: reason, DryRun: dry}
		if err := m.Validate(); err != nil && !errors.Is(err, shapers.ErrInvalidAction) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
