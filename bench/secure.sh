#!/usr/bin/env bash
# The cost of users (--auth, HTTP Basic against an argon2id hash, verified once then cached)
# and of TLS (HTTPS for clients, mutual TLS between nodes), each measured against the same
# 3-node cluster set-up without them, in one run on this machine: one workload at a time, the
# four variants back to back. Prints throughput and p99 per variant as ratios to the plain
# cluster. Machines are shared and noisy: compare ratios within one run only.
#
# Usage: bench/secure.sh            (DURATION=10s CLIENTS=16 VALUE_SIZE=100 to change)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-16}
VALUE_SIZE=${VALUE_SIZE:-100}

cargo build --release -q -p cairn
CAIRN=target/release/cairn
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

run() { # variant workload clients
  local variant=$1 workload=$2 clients=$3
  local flags=()
  case $variant in
    auth) flags=(--spawn-auth) ;;
    tls) flags=(--spawn-tls) ;;
    auth+tls) flags=(--spawn-auth --spawn-tls) ;;
  esac
  echo "running $variant $workload clients=$clients" >&2
  "$CAIRN" bench --spawn 3 "${flags[@]}" --workload "$workload" --clients "$clients" \
    --duration "$DURATION" --value-size "$VALUE_SIZE" --json \
    | sed "s/^{/{\"variant\":\"$variant\",/" >>"$OUT"
}

for spec in "insert 1" "insert $CLIENTS" "read-linearizable $CLIENTS"; do
  for variant in plain auth tls auth+tls; do
    # shellcheck disable=SC2086
    run "$variant" $spec
  done
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {(r["variant"], r["workload"], r["clients"]): r for r in rows}
variants = ["plain", "auth", "tls", "auth+tls"]
head = ["measure"] + [f"{v}" for v in variants] + [f"{v}/plain" for v in variants[1:]]
lines = []
for (workload, clients) in sorted({(r["workload"], r["clients"]) for r in rows}):
    for key, label in [("ops_per_s", "ops/s"), ("p99_ms", "p99 ms")]:
        vals = [by.get((v, workload, clients), {}).get(key) for v in variants]
        base = vals[0]
        fmt = lambda x: "-" if x is None else (f"{x:,.0f}" if x >= 100 else f"{x:.2f}")
        ratio = lambda x: "-" if x is None or not base else f"{x / base:.2f}x"
        lines.append([f"{workload} {clients} clients {label}"] + [fmt(x) for x in vals] + [ratio(x) for x in vals[1:]])
    errs = [by.get((v, workload, clients), {}).get("errors") for v in variants]
    lines.append([f"{workload} {clients} clients errors"] + [str(e) for e in errs] + ["", "", ""])
w = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
for l in [head] + lines:
    print("  ".join(str(v).ljust(w[i]) if i == 0 else str(v).rjust(w[i]) for i, v in enumerate(l)))
PY
