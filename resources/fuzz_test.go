package resources_test

import (
	"errors"
	"math"
	"testing"

	"github.com/headstart-dev/headstart/resources"
)

// FuzzParseQuantity: any text is a quantity (finite, not negative, at most
// MaxQuantity) or a typed error; none panics.
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"8", "500m", "2Gi", "1.5e3", "-1", "1e400", "NaN", "0x10", "1_000", "", " 7Ki ", "16Ei"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		x, err := resources.ParseQuantity(s)
		if err != nil {
			if !errors.Is(err, resources.ErrInvalid) && !errors.Is(err, resources.ErrNegative) && !errors.Is(err, resources.ErrOverflow) {
				t.Fatalf("%q: untyped error %v", s, err)
			}
			return
		}
		if math.IsNaN(x) || math.IsInf(x, 0) || x < 0 || x > resources.MaxQuantity {
			t.Fatalf("%q parsed to %v", s, x)
		}
	})
}

// FuzzParse: any text is a valid vector or a typed error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"cpu=500m,memory=2Gi", "cpu=1 cpu=2", "gpu=1", "cpu", "memory=-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := resources.Parse(s)
		if err != nil {
			if !errors.Is(err, resources.ErrInvalid) && !errors.Is(err, resources.ErrNegative) &&
				!errors.Is(err, resources.ErrOverflow) && !errors.Is(err, resources.ErrUnknownKind) {
				t.Fatalf("%q: untyped error %v", s, err)
			}
			return
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("%q parsed to an invalid vector %v: %v", s, v, err)
		}
	})
}
