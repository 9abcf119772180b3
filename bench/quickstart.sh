#!/usr/bin/env bash
# Times each stage of a cold quickstart (fresh workdir) and of a second,
# idempotent run on the same workdir, and prints them against the target
# (total under 180 s on 2 cores). Usage: bench/quickstart.sh [--data DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build
work=$(mktemp -d /tmp/branchml-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
for pass in cold again; do
  ./bin/branchml quickstart --workdir "$work" -o json "$@" >"$work/$pass.json" 2>"$work/$pass.log" || {
    echo "quickstart ($pass) failed; log:"; tail -30 "$work/$pass.log"; exit 1; }
  python3 - "$work/$pass.json" "$pass" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
out = r["outputs"]
print(f"== {sys.argv[2]} run")
for s in out["stages"]:
    print(f"  {s['name']:<12} {s['duration']/1e9:7.1f} s  {s['summary'][:70]}")
total = out["total"] / 1e9
print(f"  {'total':<12} {total:7.1f} s  (target < 180 s: {'met' if total < 180 else 'NOT met'}, ratio {total/180:.2f})")
PY
done
