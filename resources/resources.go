// Package resources holds the resource vector Headstart measures, predicts and
// reserves: CPU, memory, disk IOPS and throughput, and network throughput, with
// checked arithmetic and parsing of Kubernetes-style quantities ("500m", "2Gi").
//
// It imports only the standard library, so every other package can use it.
package resources

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Kind names one resource dimension.
type Kind int

// The resource dimensions, in the order Vector stores them.
const (
	CPU       Kind = iota // cores (1 = one core busy for the whole interval)
	Memory                // bytes
	DiskIOPS              // disk operations per second
	DiskBytes             // disk bytes per second, read plus written
	NetBytes              // network bytes per second, received plus sent
	NumKinds              // how many kinds there are; not a resource
)

var kindNames = [NumKinds]string{"cpu", "memory", "disk_iops", "disk_bytes", "net_bytes"}

// String returns the kind's lower-case name ("cpu", "memory", ...).
func (k Kind) String() string {
	if k < 0 || k >= NumKinds {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Kinds returns every resource kind in storage order.
func Kinds() []Kind {
	ks := make([]Kind, NumKinds)
	for i := range ks {
		ks[i] = Kind(i)
	}
	return ks
}

// ParseKind returns the kind with the given name, as printed by Kind.String.
func ParseKind(s string) (Kind, error) {
	for i, n := range kindNames {
		if n == s {
			return Kind(i), nil
		}
	}
	return 0, fmt.Errorf("resource kind %q: %w", s, ErrUnknownKind)
}

// Errors returned by this package; test for them with errors.Is.
var (
	ErrUnknownKind = errors.New("unknown resource kind")
	ErrInvalid     = errors.New("invalid resource quantity")
	ErrNegative    = errors.New("negative resource quantity")
	ErrOverflow    = errors.New("resource quantity overflows")
)

// MaxQuantity bounds every component of a valid vector. It is far above any
// real machine (an exa-unit of anything) and keeps sums of many vectors finite
// and exact enough in float64.
const MaxQuantity = 1e18

// Vector is an amount of each resource kind. The zero value is zero of
// everything. Vectors are values: arithmetic returns a new vector.
type Vector [NumKinds]float64

// Get returns the amount of kind k.
func (v Vector) Get(k Kind) float64 { return v[k] }

// With returns a copy of v with kind k set to x.
func (v Vector) With(k Kind, x float64) Vector { v[k] = x; return v }

// Add returns v + w.
func (v Vector) Add(w Vector) Vector {
	for i := range v {
		v[i] += w[i]
	}
	return v
}

// Sub returns v - w. Components may become negative; see ClampZero.
func (v Vector) Sub(w Vector) Vector {
	for i := range v {
		v[i] -= w[i]
	}
	return v
}

// Scale returns v × f.
func (v Vector) Scale(f float64) Vector {
	for i := range v {
		v[i] *= f
	}
	return v
}

// Max returns the component-wise maximum of v and w.
func (v Vector) Max(w Vector) Vector {
	for i := range v {
		v[i] = math.Max(v[i], w[i])
	}
	return v
}

// Min returns the component-wise minimum of v and w.
func (v Vector) Min(w Vector) Vector {
	for i := range v {
		v[i] = math.Min(v[i], w[i])
	}
	return v
}

// ClampZero returns v with negative components set to zero.
func (v Vector) ClampZero() Vector { return v.Max(Vector{}) }

// Fits reports whether every component of v is at most the same component of w.
func (v Vector) Fits(w Vector) bool {
	for i := range v {
		if v[i] > w[i] {
			return false
		}
	}
	return true
}

// IsZero reports whether every component is zero.
func (v Vector) IsZero() bool { return v == Vector{} }

// Validate returns an error wrapping ErrInvalid, ErrNegative or ErrOverflow
// when a component is NaN, infinite, negative or above MaxQuantity.
func (v Vector) Validate() error {
	for i, x := range v {
		k := Kind(i)
		switch {
		case math.IsNaN(x) || math.IsInf(x, 0):
			return fmt.Errorf("%s = %v: %w", k, x, ErrInvalid)
		case x < 0:
			return fmt.Errorf("%s = %v: %w", k, x, ErrNegative)
		case x > MaxQuantity:
			return fmt.Errorf("%s = %v: %w", k, x, ErrOverflow)
		}
	}
	return nil
}

// String formats the non-zero components, e.g. "cpu=2 memory=8Gi".
func (v Vector) String() string {
	var b strings.Builder
	for i, x := range v {
		if x == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		k := Kind(i)
		b.WriteString(k.String())
		b.WriteByte('=')
		if k == Memory {
			b.WriteString(FormatBytes(x))
		} else {
			b.WriteString(FormatQuantity(x))
		}
	}
	if b.Len() == 0 {
		return "0"
	}
	return b.String()
}
