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
    (cd "$dir" && go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/fuzz.$$.log 2>&1) || {
      cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log
      echo "fuzz: $pkg.$target failed; the crashing input is under its testdata/fuzz/$target/" >&2
      exit 1
    }
    rm -f /tmp/fuzz.$$.log
  done
}
run_module .
run_module examples/djia30
echo "fuzz: every target ran for $fuzztime each, $((SECONDS - start))s in all"
