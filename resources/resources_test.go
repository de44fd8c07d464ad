package resources_test

import (
	"errors"
	"math"
	"testing"

	"github.com/headstart-dev/headstart/resources"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		wantErr error
	}{
		{"500m", 0.5, nil},
		{"2", 2, nil},
		{"2Gi", 2 << 30, nil},
		{"1.5Mi", 1.5 * (1 << 20), nil},
		{"3k", 3000, nil},
		{"1.5e3", 1500, nil},
		{" 4M ", 4e6, nil},
		{"0", 0, nil},
		{"", 0, resources.ErrInvalid},
		{"Gi", 0, resources.ErrInvalid},
		{"abc", 0, resources.ErrInvalid},
		{"NaN", 0, resources.ErrInvalid},
		{"Inf", 0, resources.ErrInvalid},
		{"0x10", 0, resources.ErrInvalid},
		{"-1", 0, resources.ErrNegative},
		{"-500m", 0, resources.ErrNegative},
		{"2E", 2e18, resources.ErrOverflow},
		{"1e400", 0, resources.ErrInvalid},
	}
	for _, tt := range tests {
		got, err := resources.ParseQuantity(tt.in)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ParseQuantity(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseQuantity(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseVector(t *testing.T) {
	v, err := resources.Parse("cpu=500m, memory=2Gi,net_bytes=10M")
	if err != nil {
		t.Fatal(err)
	}
	want := resources.Vector{}.With(resources.CPU, 0.5).With(resources.Memory, 2<<30).With(resources.NetBytes, 1e7)
	if v != want {
		t.Fatalf("Parse = %v, want %v", v, want)
	}
	if got := v.String(); got != "cpu=500m memory=2Gi net_bytes=10M" {
		t.Errorf("String() = %q", got)
	}
	for in, wantErr := range map[string]error{
		"gpu=1":          resources.ErrUnknownKind,
		"cpu":            resources.ErrInvalid,
		"cpu=1,cpu=2":    resources.ErrInvalid,
		"memory=-1Gi":    resources.ErrNegative,
		"disk_iops=1e40": resources.ErrOverflow,
	} {
		if _, err := resources.Parse(in); !errors.Is(err, wantErr) {
			t.Errorf("Parse(%q) error = %v, want %v", in, err, wantErr)
		}
	}
}

func TestVectorArithmetic(t *testing.T) {
	a := resources.Vector{1, 4, 0, 0, 2}
	b := resources.Vector{2, 1, 3, 0, 0}
	if got := a.Add(b); got != (resources.Vector{3, 5, 3, 0, 2}) {
		t.Errorf("Add = %v", got)
	}
	if got := a.Sub(b).ClampZero(); got != (resources.Vector{0, 3, 0, 0, 2}) {
		t.Errorf("Sub.ClampZero = %v", got)
	}
	if got := a.Scale(2); got != (resources.Vector{2, 8, 0, 0, 4}) {
		t.Errorf("Scale = %v", got)
	}
	if a.Fits(b) || !(resources.Vector{1, 1, 0, 0, 0}).Fits(b) {
		t.Error("Fits is wrong")
	}
	if a.Max(b) != (resources.Vector{2, 4, 3, 0, 2}) || a.Min(b) != (resources.Vector{1, 1, 0, 0, 0}) {
		t.Error("Max/Min is wrong")
	}
}

func TestVectorValidate(t *testing.T) {
	tests := []struct {
		v    resources.Vector
		want error
	}{
		{resources.Vector{1, 2, 3, 4, 5}, nil},
		{resources.Vector{}.With(resources.CPU, math.NaN()), resources.ErrInvalid},
		{resources.Vector{}.With(resources.Memory, math.Inf(1)), resources.ErrInvalid},
		{resources.Vector{}.With(resources.DiskIOPS, -1), resources.ErrNegative},
		{resources.Vector{}.With(resources.NetBytes, 2e18), resources.ErrOverflow},
	}
	for _, tt := range tests {
		if err := tt.v.Validate(); !errors.Is(err, tt.want) && !(err == nil && tt.want == nil) {
			t.Errorf("%v.Validate() = %v, want %v", tt.v, err, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for x, want := range map[float64]string{0.25: "250m", 3: "3", 2.5e9: "2.5G", 12.5: "12.5"} {
		if got := resources.FormatQuantity(x); got != want {
			t.Errorf("FormatQuantity(%v) = %q, want %q", x, got, want)
		}
	}
	for x, want := range map[float64]string{512: "512", 1536: "1.5Ki", 8 << 30: "8Gi"} {
		if got := resources.FormatBytes(x); got != want {
			t.Errorf("FormatBytes(%v) = %q, want %q", x, got, want)
		}
	}
}
