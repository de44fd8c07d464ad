#!/usr/bin/env bash
# Fuzzes each target (folder:package:FuzzName) for FUZZTIME and prints its
# executions. A failing input fails the run (Go writes it to the package's
# testdata/fuzz). Go 1.26's coordinator can also fail a target at the
# -fuzztime boundary with a bare "context deadline exceeded" and no input
# (go.dev/issue/75804, fixed in Go 1.27): such a run is repeated once, and
# fails if it happens again.
set -uo pipefail
go=${GO:-go}
fuzztime=${FUZZTIME:-5m}
for t in "$@"; do
	dir=${t%%:*}; rest=${t#*:}; pkg=${rest%%:*}; name=${rest#*:}
	for attempt in 1 2; do
		if out=$(cd "$dir" && $go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg" 2>&1); then
			echo "fuzz $pkg $name execs=$(echo "$out" | sed -n 's/.*execs: \([0-9]*\).*/\1/p' | tail -1)"
			continue 2
		fi
		if [ "$attempt" = 1 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
			echo "fuzz $pkg $name: stopped by Go's -fuzztime deadline race with no failing input (go.dev/issue/75804); once more"
			continue
		fi
		echo "$out" | tail -30
		echo "fuzz $name FAILED"
		exit 1
	done
done
