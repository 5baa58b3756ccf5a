#!/usr/bin/env bash
# Rows/s of pseudonymize(vin, 'vin') over a Parquet file, next to DataFusion's built-in
# sha256(vin) over the same file, in one run, against a pseudonymd of the dist profile on this machine.
#   udf/bench.sh [rows] [cardinality] [rounds]        (defaults: 10000000 1000000 3)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10000000}
cardinality=${2:-1000000}
rounds=${3:-3}
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
time_of "SELECT max(pseudonymize(vin, 'vin')) FROM vins" > /dev/null # warm the service
echo "rows: $rows, distinct VINs: $cardinality; rounds alternate the built-in and the UDF"
for round in $(seq "$rounds"); do
  builtin=$(time_of "SELECT max(sha256(vin)) FROM vins")
  ours=$(time_of "SELECT max(pseudonymize(vin, 'vin')) FROM vins")
  python3 - "$round" "$rows" "$builtin" "$ours" <<'PY'
import sys
round_, rows, builtin, ours = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"round {round_}: sha256(vin) {rows / builtin:>12,.0f} rows/s ({builtin:.2f} s), "
      f"pseudonymize(vin, 'vin') {rows / ours:>12,.0f} rows/s ({ours:.2f} s): {ours / builtin:.2f}x the time")
PY
done
