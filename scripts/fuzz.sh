#!/usr/bin/env bash
# Runs every Go fuzz target of the agents and of the example for a short,
# fixed time each (FUZZTIME, default 4s), one after the other, and fails on
# the first crash. Go keeps a crashing input under the package's
# testdata/fuzz/<Target>/, where plain `go test` replays it from then on:
# commit it with the fix. Called by `make test` (make fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-4s}"
n=0
start=$SECONDS
run_module() { # dir
  local dir="$1"
  (
    cd "$dir"
    # "go test -list" prints each package's matching tests, then "ok <pkg>".
    go test -list '^Fuzz' ./... 2>/dev/null | awk '/^Fuzz/ {t[++k]=$1} /^ok / {for (i=1;i<=k;i++) print $2, t[i]; k=0}'
  ) | while read -r pkg target; do
    printf 'fuzz %-72s %s\n' "$pkg.$target" "$fuzztime"
    pkgdir=$(cd "$dir" && go list -f '{{.Dir}}' "$pkg")
    corpus() { { ls "$pkgdir/testdata/fuzz/$target" 2>/dev/null || true; } | sort; }
    before=$(corpus)
    for attempt in 1 2; do
      if (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/fuzz.$$.log 2>&1); then
        break
      fi
      # Go's fuzzing coordinator can fail a target at the -fuzztime deadline
      # with "context deadline exceeded" and no input (golang/go#75804, fixed
      # in Go 1.27): such a failure, with no new input under testdata/fuzz,
      # runs once more; a crash writes its input and fails at once.
      if [ "$attempt" = 1 ] && [ "$(corpus)" = "$before" ] && grep -q 'context deadline exceeded' /tmp/fuzz.$$.log; then
        echo "fuzz: $pkg.$target: context deadline exceeded with no crashing input (golang/go#75804); running it again"
        continue
      fi
      cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log
      echo "fuzz: $pkg.$target failed; the crashing input, if any, is under its testdata/fuzz/$target/" >&2
      exit 1
    done
    rm -f /tmp/fuzz.$$.log
  done
}
run_module .
run_module examples/djia30
echo "fuzz: every target ran for $fuzztime each, $((SECONDS - start))s in all"
