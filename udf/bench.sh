#!/usr/bin/env bash
# Rows/s of pseudonymize(vin, 'vin') over a Parquet file, next to DataFusion's built-in
# sha256(vin) over the same file, in one run, against a pseudonymd of the dist profile on this machine.
#   udf/bench.sh [rows] [cardinality]        (defaults: 10000000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10000000}
cardinality=${2:-1000000}
cargo build --profile dist --locked -q -p pseudonym-service -p pseudonym-udf
work=$(mktemp -d)
trap 'kill "$service" 2>/dev/null || true; rm -rf "$work"' EXIT

target/dist/pseudonymd --listen 127.0.0.1:0 --ready-file "$work/ready.json" --data-dir "$work/service" \
  --log warn 2> "$work/service.log" &
service=$!
for _ in $(seq 100); do [ -f "$work/ready.json" ] && break; sleep 0.1; done
export PSEUDONYM_URL=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["url"])' "$work/ready.json")
export PSEUDONYM_API_KEY=$(cat "$work/service/dev-api-key")

sql=target/dist/pseudonym-sql
$sql -q generate --rows "$rows" --cardinality "$cardinality" "$work/vins.parquet"
time_of() {
  $sql -q --timing -t "vins=$work/vins.parquet" "$1" 2>&1 >/dev/null | sed -n 's/^time: \(.*\) s$/\1/p'
}
time_of "SELECT max(sha256(vin)) FROM vins" > /dev/null # warm the page cache
builtin=$(time_of "SELECT max(sha256(vin)) FROM vins")
ours=$(time_of "SELECT max(pseudonymize(vin, 'vin')) FROM vins")
python3 - "$rows" "$builtin" "$ours" <<'PY'
import sys
rows, builtin, ours = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
print(f"rows                          : {rows:,}")
print(f"sha256(vin)          (builtin): {rows / builtin:>14,.0f} rows/s  ({builtin:.2f} s)")
print(f"pseudonymize(vin,'vin')  (UDF): {rows / ours:>14,.0f} rows/s  ({ours:.2f} s)")
print(f"ratio builtin / UDF           : {ours / builtin:.2f}x slower")
PY
