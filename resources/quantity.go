package resources

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// suffixes of Kubernetes quantities, binary first so "Mi" is not read as "M".
var suffixes = []struct {
	s string
	f float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
	{"n", 1e-9}, {"u", 1e-6}, {"m", 1e-3},
	{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
}

// ParseQuantity parses a Kubernetes-style quantity: a decimal number with an
// optional exponent and an optional suffix, decimal (m, k, M, G, ...) or binary
// (Ki, Mi, Gi, ...). "500m" is 0.5, "2Gi" is 2147483648, "1.5e3" is 1500.
// Negative, non-finite and overflowing values are errors wrapping ErrNegative,
// ErrInvalid or ErrOverflow.
func ParseQuantity(s string) (float64, error) {
	t := strings.TrimSpace(s)
	f := 1.0
	for _, suf := range suffixes {
		if strings.HasSuffix(t, suf.s) {
			t, f = strings.TrimSuffix(t, suf.s), suf.f
			break
		}
	}
	if t == "" || strings.ContainsAny(t, "xXpP_") { // no hex floats, no digit separators
		return 0, fmt.Errorf("parse quantity %q: %w", s, ErrInvalid)
	}
	x, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return 0, fmt.Errorf("parse quantity %q: %w", s, ErrInvalid)
	}
	x *= f
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return 0, fmt.Errorf("parse quantity %q: %w", s, ErrInvalid)
	case x < 0:
		return 0, fmt.Errorf("parse quantity %q: %w", s, ErrNegative)
	case x > MaxQuantity:
		return 0, fmt.Errorf("parse quantity %q: %w", s, ErrOverflow)
	}
	return x, nil
}

// Parse parses a vector written as comma- or space-separated kind=quantity
// pairs, e.g. "cpu=500m,memory=2Gi". Kinds not named are zero; a kind named
// twice is an error.
func Parse(s string) (Vector, error) {
	var v Vector
	var seen [NumKinds]bool
	for _, field := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		name, q, ok := strings.Cut(field, "=")
		if !ok {
			return Vector{}, fmt.Errorf("parse resources %q: %q is not kind=quantity: %w", s, field, ErrInvalid)
		}
		k, err := ParseKind(name)
		if err != nil {
			return Vector{}, fmt.Errorf("parse resources %q: %w", s, err)
		}
		if seen[k] {
			return Vector{}, fmt.Errorf("parse resources %q: %s given twice: %w", s, k, ErrInvalid)
		}
		seen[k] = true
		if v[k], err = ParseQuantity(q); err != nil {
			return Vector{}, fmt.Errorf("parse resources %q: %w", s, err)
		}
	}
	return v, nil
}

// FormatQuantity formats x compactly: whole numbers as integers, fractions
// below 10 with milli precision ("500m"), others rounded to three significant
// digits with a decimal suffix.
func FormatQuantity(x float64) string {
	switch {
	case x == math.Trunc(x) && math.Abs(x) < 1e6:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case math.Abs(x) < 10:
		return strconv.FormatFloat(math.Round(x*1000), 'f', -1, 64) + "m"
	}
	for _, suf := range []struct {
		s string
		f float64
	}{{"E", 1e18}, {"P", 1e15}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if math.Abs(x) >= suf.f {
			return strconv.FormatFloat(x/suf.f, 'g', 3, 64) + suf.s
		}
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}

// FormatBytes formats a byte count with a binary suffix and up to one decimal,
// e.g. "8Gi", "1.5Mi", "512".
func FormatBytes(x float64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	i := 0
	for math.Abs(x) >= 1024 && i < len(units)-1 {
		x /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64) + units[i]
}
