package main

import (
	"io"
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkActivityOverhead/none-2         	   10000	     50000 ns/op	   13000 B/op	     197 allocs/op
BenchmarkActivityOverhead/none-2         	   10000	     52000 ns/op	   13000 B/op	     197 allocs/op
BenchmarkActivityOverhead/none-2         	   10000	     90000 ns/op	   13000 B/op	     197 allocs/op
BenchmarkActivityOverhead/otel-2         	   10000	     70000 ns/op	   19000 B/op	     272 allocs/op
BenchmarkActivityOverhead/profiler-2     	   10000	     61000 ns/op	   15000 B/op	     222 allocs/op
PASS
`

func TestRatioUsesMedians(t *testing.T) {
	res, err := parse(strings.NewReader(sample), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	base := res["BenchmarkActivityOverhead/none"]
	if got := median(base.ns); got != 52000 {
		t.Fatalf("median of none = %v, want 52000 (the outlier must not move it)", got)
	}
	r, err := ratio(base, res["BenchmarkActivityOverhead/otel"], res["BenchmarkActivityOverhead/profiler"])
	if err != nil {
		t.Fatal(err)
	}
	// One round has all three variants: (61000 − 50000) / (70000 − 50000).
	if want := (61000.0 - 50000) / (70000 - 50000); r != want {
		t.Fatalf("ratio = %v, want %v", r, want)
	}
}

func TestNoRatioWhenTheReferenceIsNotSlower(t *testing.T) {
	fast := &result{ns: []float64{100}}
	if _, err := ratio(fast, fast, fast); err == nil {
		t.Fatal("a zero denominator must be an error, not a ratio")
	}
}

func TestRatioIsTheMedianOfRounds(t *testing.T) {
	base := &result{ns: []float64{100, 200, 100}}
	ref := &result{ns: []float64{200, 400, 150}}
	cand := &result{ns: []float64{150, 250, 140}}
	// Rounds: 0.5, 0.25, 0.8 → median 0.5; drift in round two does not matter.
	r, err := ratio(base, ref, cand)
	if err != nil || r != 0.5 {
		t.Fatalf("ratio = %v, %v; want 0.5", r, err)
	}
}
