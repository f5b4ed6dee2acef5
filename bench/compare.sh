#!/usr/bin/env bash
# Runs the same workloads, one after the other on this machine, against
#   - Cairn: a 3-node cluster started by `cairn bench --spawn 3`,
#   - SQLite alone: one file, WAL, synchronous=FULL (what one disk allows without replication),
#   - etcd: a 3-member cluster from Debian's etcd-server package,
# and prints one table with Cairn/baseline ratios. Machines are shared and noisy: compare the
# ratios, not the absolute figures, and only within one run.
#
# Usage: bench/compare.sh            (DURATION=10s CLIENTS=16 VALUE_SIZE=100 TRIALS=3 to change)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-16}
VALUE_SIZE=${VALUE_SIZE:-100}
TRIALS=${TRIALS:-3}

if ! command -v etcd >/dev/null 2>&1; then
  echo "installing etcd-server (Debian) for the baseline" >&2
  apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null
  # Debian starts a system etcd on 2379; stop it so it does not share the machine.
  (systemctl stop etcd 2>/dev/null || service etcd stop 2>/dev/null || pkill -x etcd || true) >/dev/null 2>&1
fi

cargo build --release -q -p cairn
CAIRN=target/release/cairn
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

run() { # system workload clients [extra args...]
  local system=$1 workload=$2 clients=$3; shift 3
  local spawn=()
  [ "$system" != sqlite ] && spawn=(--spawn 3)
  echo "running $system $workload clients=$clients" >&2
  "$CAIRN" bench --system "$system" "${spawn[@]}" --workload "$workload" --clients "$clients" \
    --duration "$DURATION" --value-size "$VALUE_SIZE" --trials "$TRIALS" --json "$@" >>"$OUT"
}

for system in cairn sqlite etcd; do
  run "$system" insert 1
  run "$system" insert "$CLIENTS"
  run "$system" batch "$CLIENTS"
  run "$system" read-none "$CLIENTS"
  run "$system" read-weak "$CLIENTS"
  run "$system" read-linearizable "$CLIENTS"
  [ "$system" != sqlite ] && run "$system" failover 4
done

python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {(r["system"], r["workload"], r["clients"]): r for r in rows}
def get(system, workload, clients, key):
    r = by.get((system, workload, clients))
    return None if r is None else r.get(key)
def fmt(v, unit=""):
    return "-" if v is None else (f"{v:,.0f}{unit}" if v >= 100 else f"{v:.2f}{unit}")
def ratio(a, b):
    return "-" if a is None or b in (None, 0) else f"{a / b:.2f}x"
lines = []
clients = max(r["clients"] for r in rows if r["workload"] != "Failover")
for label, workload, c, key, unit in [
    ("writes/s, 1 client", "Insert", 1, "ops_per_s", ""),
    (f"writes/s, {clients} clients", "Insert", clients, "ops_per_s", ""),
    (f"write p99, {clients} clients", "Insert", clients, "p99_ms", " ms"),
    (f"rows/s in batches of 100, {clients} clients", "Batch", clients, "rows_per_s", ""),
    (f"reads/s none (etcd serializable), {clients} clients", "ReadNone", clients, "ops_per_s", ""),
    (f"reads/s weak (etcd serializable), {clients} clients", "ReadWeak", clients, "ops_per_s", ""),
    (f"reads/s linearizable, {clients} clients", "ReadLinearizable", clients, "ops_per_s", ""),
    (f"read p99 linearizable, {clients} clients", "ReadLinearizable", clients, "p99_ms", " ms"),
]:
    c_, s_, e_ = (get(x, workload, c, key) for x in ("cairn", "sqlite", "etcd"))
    lines.append((label, fmt(c_, unit), fmt(s_, unit), ratio(c_, s_), fmt(e_, unit), ratio(c_, e_)))
fc = next((r for r in rows if r["system"] == "cairn" and r["workload"] == "Failover"), None)
fe = next((r for r in rows if r["system"] == "etcd" and r["workload"] == "Failover"), None)
mx = lambda r: None if r is None else r["max_first_ack_ms"]
lines.append(("failover: worst time to first write", fmt(mx(fc), " ms"), "-", "-", fmt(mx(fe), " ms"), ratio(mx(fc), mx(fe))))
lost = lambda r: "-" if r is None else f'{r["lost_writes"]}/{r["acknowledged_writes"]}'
lines.append(("failover: acknowledged writes lost", lost(fc), "-", "-", lost(fe), "-"))
head = ("measure", "Cairn", "SQLite", "Cairn/SQLite", "etcd", "Cairn/etcd")
w = [max(len(str(x[i])) for x in lines + [head]) for i in range(6)]
for l in [head] + lines:
    print("  ".join(str(v).ljust(w[i]) if i == 0 else str(v).rjust(w[i]) for i, v in enumerate(l)))
PY
