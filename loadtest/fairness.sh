#!/usr/bin/env bash
# One greedy API key next to a modest one (BENCHMARKS.md): pseudonymd on core 0, the load
# generators on core 1, the greedy one niced. Runs the modest key alone, next to a greedy key
# without limits of its own, and next to one with a budget, and prints the three side by side.
#   cargo build --profile dist -p pseudonym-service -p pseudonym-loadtest
#   loadtest/fairness.sh          (BUDGET=300000 GREEDY_INFLIGHT=2 GREEDY_BATCH=2000 by default;
#                                  SKIP_ALONE=1, SKIP_UNLIMITED=1 leave those runs out)
set -euo pipefail
cd "$(dirname "$0")/.."
B=target/dist
W=$(mktemp -d)
$B/pseudonymd keygen --keyring-file $W/keyring.toml 2>/dev/null
$B/pseudonymd api-key --api-keys-file $W/keys.toml --name modest --domains vin > $W/modest.key
$B/pseudonymd api-key --api-keys-file $W/keys.toml --name greedy-unlimited --domains vin > $W/unlimited.key
$B/pseudonymd api-key --api-keys-file $W/keys.toml --name greedy-budget --domains vin \
  --max-values-per-second ${BUDGET:-300000} --max-concurrent-requests ${GREEDY_INFLIGHT:-2} > $W/budget.key
taskset -c 0 $B/pseudonymd --keyring-file $W/keyring.toml --api-keys-file $W/keys.toml \
  --listen 127.0.0.1:18080 --log warn 2> $W/service.log &
svc=$!
trap 'kill $svc 2>/dev/null || true; rm -rf "$W"' EXIT
sleep 1
U=http://127.0.0.1:18080
LT="taskset -c 1 $B/pseudonym-loadtest --url $U --no-crypto-baseline --no-progress"
modest() { $LT --api-key "$(cat $W/modest.key)" --json $W/$1.json rate --values-per-s 100000 --interval-ms 100 --batch-size 900 --concurrency 4 --max-outstanding 16 --duration-s 20 > $W/$1.txt; }
greedy() { nice -n 19 $LT --api-key "$(cat $W/$1.key)" --via client --retries 30 --partition 450000 --json $W/greedy-$1.json rate --values-per-s 4500000 --interval-ms 100 --batch-size ${GREEDY_BATCH:-2000} --concurrency 4 --max-outstanding 8 --duration-s 24 > $W/greedy-$1.txt 2>&1; }
summary() { python3 - "$@" <<'PY'
import json, sys
for path in sys.argv[1:]:
    run = json.load(open(path))["runs"][0]
    lat, sch = run["latency_ms"], run.get("schedule") or {}
    print(f"{path.split('/')[-1]:28} {run['values_per_s']:>12,.0f} values/s  p50 {lat['p50']:8.1f}  p99 {lat['p99']:8.1f} ms  errors {run['errors']}  keeps_up {sch.get('keeps_up')}")
PY
}
[ -n "${SKIP_ALONE:-}" ] || modest alone
[ -n "${SKIP_UNLIMITED:-}" ] || { greedy unlimited & g=$!; sleep 2; modest with-unlimited; wait $g || true; }
sleep 2
greedy budget & g=$!; sleep 2; modest with-budget; wait $g || true
summary $(ls $W/alone.json $W/with-unlimited.json $W/greedy-unlimited.json 2>/dev/null) $W/with-budget.json $W/greedy-budget.json
grep -h "key_limited" <(curl -s $U/metrics) || true
