#!/usr/bin/env bash
# Runs the benchmarks and prints each figure next to the baseline measured
# in the same run. Pass criterion options after --, e.g.
#   ./scripts/bench.sh -- --measurement-time 10
# Default: a quick run (1 s warm-up, 3 s measurement per benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh

opts=(--warm-up-time 1 --measurement-time 3)
if [ "${1:-}" = "--" ]; then shift; opts=("$@"); fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "==> running benchmarks (a few minutes)"
for target in "tortie-selector selector" "tortie-datastore embedded" "tortie-ipam ipam"; do
  set -- $target
  if ! cargo bench --locked -p "$1" --bench "$2" -- "${opts[@]}" >>"$log" 2>&1; then
    cat "$log"
    exit 1
  fi
done

python3 - <<'PY'
import json, pathlib
root = pathlib.Path("target/criterion")
def mean_ns(group, bench):
    f = root / group / bench.replace("/", "_") / "new" / "estimates.json"
    return json.loads(f.read_text())["mean"]["point_estimate"] if f.exists() else None

def table(title, group, rows, baseline, per=1, unit="ns"):
    base = mean_ns(group, baseline)
    print(f"\n{title}")
    print(f"  {'benchmark':44} {unit:>12}   x baseline")
    for r in rows:
        v = mean_ns(group, r)
        if v is None:
            continue
        ratio = f"{v / base:10.2f}" if base else "         -"
        print(f"  {r:44} {v / per:12.1f}   {ratio}")

table("Selector evaluation (per endpoint; baseline: hand-written equality)",
      "eval_1000_endpoints",
      ["btreemap/baseline_handwritten_equality", "btreemap/equality", "btreemap/in_set",
       "btreemap/has", "btreemap/four_clause_and_or", "btreemap/all",
       "hashmap/equality", "hashmap/four_clause_and_or"],
      "btreemap/baseline_handwritten_equality", per=1000)
table("Selector parsing", "parse", ["equality", "namespaced_policy", "mixed"], "equality")
table("Datastore compare-and-swap (per update, us; baseline: raw SQLite CAS, same pragmas)",
      "cas_update", ["baseline_raw_sqlite_cas", "same_key", "distinct_keys"],
      "baseline_raw_sqlite_cas", per=1000, unit="us")
table("Datastore list of 10,000 x 600 B (ms; baseline: raw SQLite range select)",
      "list", ["baseline_raw_sqlite_select", "10k_resources_600B"],
      "baseline_raw_sqlite_select", per=1e6, unit="ms")
table("IPAM allocation (us; baseline: one raw get + CAS of a block key)",
      "ipam_embedded", ["baseline_raw_block_cas", "auto_assign_then_release_by_handle",
      "auto_assign_then_release_by_address", "core_block_assign_release"],
      "baseline_raw_block_cas", per=1000, unit="us")
table("Write to watch event (us; baseline: same process)",
      "write_to_watch_event", ["same_instance", "other_instance"], "same_instance", per=1000, unit="us")
PY
