// Command benchratio reads `go test -bench` output on stdin, echoes it, and
// prints for each benchmark named on the command line its median ns/op and
// allocs/op over the runs, then one line comparing the overheads:
//
//	benchratio -prefix BenchmarkActivityOverhead -base none -ref otel -cand profiler -label profiler_overhead_ratio_vs_otel
//
// prints `profiler_overhead_ratio_vs_otel: R` with R the median over rounds of
// (cand − base) / (ref − base).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
)

// result holds the runs of one benchmark.
type result struct{ ns, allocs []float64 }

var line = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:.*?\s([\d.]+) allocs/op)?`)

// parse collects the runs of every benchmark in r, echoing r to echo.
func parse(r io.Reader, echo io.Writer) (map[string]*result, error) {
	out := map[string]*result{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Fprintln(echo, sc.Text())
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		res := out[m[1]]
		if res == nil {
			res = &result{}
			out[m[1]] = res
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		res.ns = append(res.ns, ns)
		if m[3] != "" {
			a, _ := strconv.ParseFloat(m[3], 64)
			res.allocs = append(res.allocs, a)
		}
	}
	return out, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// ratio is the median over rounds of (cand − base) / (ref − base): `go test
// -count N` runs the three variants in turn N times, so the i-th run of each
// shares a round, and drift between rounds cancels out.
func ratio(base, ref, cand *result) (float64, error) {
	n := min(len(base.ns), len(ref.ns), len(cand.ns))
	var rs []float64
	for i := 0; i < n; i++ {
		if d := ref.ns[i] - base.ns[i]; d > 0 {
			rs = append(rs, (cand.ns[i]-base.ns[i])/d)
		}
	}
	if len(rs) == 0 {
		return 0, fmt.Errorf("in no round was the reference slower than the baseline (%.0f vs %.0f ns/op median): no ratio", median(ref.ns), median(base.ns))
	}
	return median(rs), nil
}

func main() {
	prefix := flag.String("prefix", "", "benchmark name before /")
	base := flag.String("base", "none", "baseline sub-benchmark")
	ref := flag.String("ref", "otel", "reference sub-benchmark")
	cand := flag.String("cand", "profiler", "candidate sub-benchmark")
	label := flag.String("label", "overhead_ratio", "name of the ratio line")
	flag.Parse()

	results, err := parse(os.Stdin, os.Stdout)
	if err != nil {
		fail("read: %v", err)
	}
	get := func(name string) *result {
		r := results[*prefix+"/"+name]
		if r == nil {
			fail("no runs of %s/%s in the input", *prefix, name)
		}
		return r
	}
	b, rf, c := get(*base), get(*ref), get(*cand)
	fmt.Printf("\n%-10s %12s %12s %14s %8s\n", "variant", "ns/activity", "allocs", "overhead ns", "runs")
	for _, n := range []string{*base, *ref, *cand} {
		r := get(n)
		fmt.Printf("%-10s %12.0f %12.0f %14.0f %8d\n", n, median(r.ns), median(r.allocs), median(r.ns)-median(b.ns), len(r.ns))
	}
	fmt.Printf("%s allocs per activity over %s: %.0f (%s: %.0f)\n", *cand, *base, median(c.allocs)-median(b.allocs), *ref, median(rf.allocs)-median(b.allocs))
	r, err := ratio(b, rf, c)
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("%s: %.2f\n", *label, r)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchratio: "+format+"\n", args...)
	os.Exit(1)
}
