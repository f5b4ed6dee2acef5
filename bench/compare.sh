#!/usr/bin/env bash
# Issue 11's comparison: the same workloads, one after the other on this machine, against
#   - Cairn: a 3-node cluster started by `cairn bench --spawn 3`,
#   - SQLite alone: one file, WAL, synchronous=FULL (what one disk allows without replication),
#   - etcd: a 3-member cluster of Debian's etcd-server (3.4) through its native gRPC API
#     (`--system etcd-grpc`); its JSON gateway (`--system etcd`) with SYSTEMS="... etcd",
# and prints one table of Cairn/SQLite and Cairn/etcd ratios, each line beside its goal and
# whether it is met. The raw JSON lines (one per run) go to target/compare-<date>.jsonl.
# Machines are shared and noisy: compare the ratios, not the absolute figures, and only
# within one run.
#
# Usage: bench/compare.sh
#   DURATION=10s      each timed run            VALUE_SIZE=100   bytes per value
#   TRIALS=10         failover trials           ROWS=1000000     rows preloaded by
#                                                                snapshot-stall, restart, catch-up
#   STALL_DURATION=30s  snapshot-stall's writer (long enough for several snapshots of
#                     1,000 entries each at one writer's rate)
#   SYSTEMS="cairn sqlite etcd-grpc"            add `etcd` for the JSON gateway too
#   ONLY="insert batch read failover snapshot-stall restart catch-up"   a subset, e.g.
#                     ONLY="insert batch" DURATION=3s bench/compare.sh for a quick run
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
VALUE_SIZE=${VALUE_SIZE:-100}
TRIALS=${TRIALS:-10}
ROWS=${ROWS:-1000000}
STALL_DURATION=${STALL_DURATION:-30s}
SYSTEMS=${SYSTEMS:-cairn sqlite etcd-grpc}
ONLY=${ONLY:-insert batch read failover snapshot-stall restart catch-up}
# The write workloads' client counts, and the one of batches and reads.
WRITE_CLIENTS="1 16 64"
CLIENTS=16
FAILOVER_CLIENTS=4

wants() { [[ " $ONLY " == *" $1 "* ]]; }
has() { [[ " $SYSTEMS " == *" $1 "* ]]; }

missing=()
if [[ " $SYSTEMS " == *" etcd"* ]] && ! command -v etcd >/dev/null 2>&1; then
  missing+=(etcd-server)
fi
# etcd-client's build script compiles etcd's .proto files with protoc.
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian)" >&2
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian starts a system etcd on 2379 where a service manager runs; stop it so that it
  # does not share the machine (the bench's members run on ports of their own).
  if [[ " ${missing[*]} " == *" etcd-server "* ]]; then
    (systemctl stop etcd || service etcd stop || true) >/dev/null 2>&1
  fi
fi

# CAIRN=path/to/cairn measures that binary instead (built with --features etcd-grpc), e.g.
# an older commit's, for a before/after pair of runs on the same machine.
if [ -z "${CAIRN:-}" ]; then
  cargo build --release -q -p cairn --features etcd-grpc
  CAIRN=target/release/cairn
fi
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=target/compare-$STAMP.jsonl
: >"$OUT"
BEGAN=$(date +%s)
FAILED=()

run() { # system workload clients [extra args...]; RUN_DURATION overrides DURATION
  local system=$1 workload=$2 clients=$3
  shift 3
  local spawn=()
  if [ "$system" != sqlite ]; then spawn=(--spawn 3); fi
  echo "running $system $workload clients=$clients $*" >&2
  if ! "$CAIRN" bench --system "$system" "${spawn[@]}" --workload "$workload" \
    --clients "$clients" --duration "${RUN_DURATION:-$DURATION}" --value-size "$VALUE_SIZE" \
    --trials "$TRIALS" --json "$@" >>"$OUT"; then
    echo "FAILED: $system $workload clients=$clients" >&2
    FAILED+=("$system $workload $clients")
  fi
}

for system in $SYSTEMS; do
  if wants insert; then
    for c in $WRITE_CLIENTS; do run "$system" insert "$c"; done
  fi
  if wants batch; then run "$system" batch "$CLIENTS"; fi
  if wants read; then
    for w in read-none read-weak read-linearizable; do run "$system" "$w" "$CLIENTS"; done
  fi
  if wants failover && [ "$system" != sqlite ]; then
    run "$system" failover "$FAILOVER_CLIENTS"
  fi
done
if wants snapshot-stall; then
  if has cairn; then RUN_DURATION=$STALL_DURATION run cairn snapshot-stall 1 --rows "$ROWS"; fi
  if has sqlite; then RUN_DURATION=$STALL_DURATION run sqlite snapshot-stall 1 --rows "$ROWS"; fi
fi
if wants restart && has cairn; then run cairn restart 1 --rows "$ROWS"; fi
if wants catch-up && has cairn; then
  run cairn catch-up 1 --rows "$ROWS"
  # The disk's sequential write rate, on the file system of the nodes' temporary
  # directories, in the same run.
  DD=$(mktemp -p "${TMPDIR:-/tmp}" compare-dd.XXXXXX)
  echo "measuring the disk's sequential write rate (dd, 512 MiB, fdatasync)" >&2
  if dd_out=$(dd if=/dev/zero of="$DD" bs=1M count=512 conv=fdatasync 2>&1); then
    # "536870912 bytes (537 MB, 512 MiB) copied, 1.2 s, 447 MB/s": bytes over seconds.
    echo "$dd_out" | awk -v q='"' '/copied/ {
        for (i = 1; i <= NF; i++) if ($i == "s,") s = $(i - 1);
        printf "{%ssystem%s:%sdisk%s,%sworkload%s:%sDiskWrite%s,%sclients%s:1,%sbytes%s:%d,%sseconds%s:%s,%smb_per_s%s:%.1f}\n",
          q,q,q,q,q,q,q,q,q,q,q,q,$1,q,q,s,q,q,$1 / s / 1e6 }' >>"$OUT"
  else
    FAILED+=("dd")
  fi
  rm -f "$DD"
fi

python3 - "$OUT" "$ROWS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
n_rows = int(sys.argv[2])
by = {(r["system"], r["workload"], r["clients"]): r for r in rows}
etcd = "etcd-grpc" if any(r["system"] == "etcd-grpc" for r in rows) else "etcd"
def get(system, workload, clients, key):
    r = by.get((system, workload, clients))
    return None if r is None else r.get(key)
def first(system, workload):
    return next((r for r in rows if r["system"] == system and r["workload"] == workload), None)
def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:,.0f}{unit}" if abs(v) >= 100 else f"{v:.2f}{unit}"
def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b
def rfmt(x):
    return "-" if x is None else f"{x:.2f}x"
def met(ok):
    return "-" if ok is None else ("yes" if ok else "NO")
def at_least(x, goal):
    return None if x is None else x >= goal
def at_most(x, goal):
    return None if x is None else x <= goal

lines = []
def line(label, c, s, e, unit="", goal="", ok=None):
    lines.append((label, fmt(c, unit), fmt(s, unit), rfmt(ratio(c, s)), fmt(e, unit),
                  rfmt(ratio(c, e)), goal, met(ok)))

for clients, goal in [(1, 1.5), (16, 2.0), (64, 2.0)]:
    c, s, e = (get(x, "Insert", clients, "ops_per_s") for x in ("cairn", "sqlite", etcd))
    line(f"writes/s, {clients} client{'s' if clients > 1 else ''}", c, s, e,
         goal=f">= {goal}x etcd", ok=at_least(ratio(c, e), goal))
c, s, e = (get(x, "Insert", 16, "p99_ms") for x in ("cairn", "sqlite", etcd))
line("write p99, 16 clients", c, s, e, " ms", "<= etcd's", None if c is None or e is None else c <= e)
c, s, e = (get(x, "Batch", 16, "rows_per_s") for x in ("cairn", "sqlite", etcd))
line("rows/s in batches of 100, 16 clients", c, s, e, goal=">= 0.6x SQLite",
     ok=at_least(ratio(c, s), 0.6))
for label, workload in [("reads/s none (etcd serializable), 16 clients", "ReadNone"),
                        ("reads/s weak (etcd serializable), 16 clients", "ReadWeak")]:
    line(label, *(get(x, workload, 16, "ops_per_s") for x in ("cairn", "sqlite", etcd)))
c, s, e = (get(x, "ReadLinearizable", 16, "ops_per_s") for x in ("cairn", "sqlite", etcd))
line("reads/s linearizable, 16 clients", c, s, e, goal=">= 2x etcd", ok=at_least(ratio(c, e), 2.0))
line("read p99 linearizable, 16 clients",
     *(get(x, "ReadLinearizable", 16, "p99_ms") for x in ("cairn", "sqlite", etcd)), " ms")

fc, fe = first("cairn", "Failover"), first(etcd, "Failover")
fv = lambda r, k: None if r is None else r.get(k)
trials = fv(fc, "trials")
line(f"failover: median time to first write ({trials} trials)", fv(fc, "median_first_ack_ms"),
     None, fv(fe, "median_first_ack_ms"), " ms", "<= 500 ms", at_most(fv(fc, "median_first_ack_ms"), 500))
line("failover: worst time to first write", fv(fc, "max_first_ack_ms"), None,
     fv(fe, "max_first_ack_ms"), " ms", "<= 1000 ms", at_most(fv(fc, "max_first_ack_ms"), 1000))
lost = lambda r: "-" if r is None else f'{r["lost_writes"]}/{r["acknowledged_writes"]}'
lines.append(("failover: acknowledged writes lost", lost(fc), "-", "-", lost(fe), "-", "0",
              met(None if fc is None else fc["lost_writes"] == 0)))

sc, ss = first("cairn", "SnapshotStall"), first("sqlite", "SnapshotStall")
stall_rows = fv(sc, "rows") or fv(ss, "rows") or n_rows
note = "" if stall_rows == 1_000_000 else " (goal: at 1,000,000 rows)"
line(f"snapshot-stall: preload rows/s ({stall_rows:,} rows, 1,000-row txns, 4 loaders)",
     fv(sc, "load_rows_per_s"), fv(ss, "load_rows_per_s"), None)
snaps = fv(sc, "snapshots")
snapped = snaps is not None and sum(snaps) > 0
line("snapshot-stall: longest gap between writes", fv(sc, "max_gap_ms"), fv(ss, "max_gap_ms"),
     None, " ms", "<= 100 ms" + note, at_most(fv(sc, "max_gap_ms"), 100) if snapped else None)
line("snapshot-stall: one writer's writes/s", fv(sc, "ops_per_s"), fv(ss, "ops_per_s"), None)
line("snapshot-stall: one writer's p50", fv(sc, "p50_ms"), fv(ss, "p50_ms"), None, " ms")
line("snapshot-stall: one writer's p99", fv(sc, "p99_ms"), fv(ss, "p99_ms"), None, " ms")
line("snapshot-stall: one writer's max", fv(sc, "max_ms"), fv(ss, "max_ms"), None, " ms")
lines.append(("snapshot-stall: snapshots per node during the run",
              "-" if snaps is None else "/".join(map(str, snaps)), "-", "-", "-", "-",
              "" if snapped or sc is None else "none: run longer (STALL_DURATION)", "-"))

rc = first("cairn", "Restart")
line("restart all: first linearizable read", fv(rc, "restart_all_first_linearizable_read_ms"),
     None, None, " ms", "<= 2000 ms", at_most(fv(rc, "restart_all_first_linearizable_read_ms"), 2000))
line("restart a SIGKILLed follower: its first read", fv(rc, "follower_kill_restart_read_ms"),
     None, None, " ms")

cc, disk = first("cairn", "CatchUp"), first("disk", "DiskWrite")
line("catch-up: time to the leader's applied index", fv(cc, "catch_up_ms"), None, None, " ms")
line("catch-up: snapshot MB (leader's databases)",
     None if cc is None else cc["snapshot_bytes"] / 1e6, None, None)
line("catch-up: MB/s", fv(cc, "mb_per_s"), None, None)
line("disk sequential write MB/s (dd, fdatasync)", fv(disk, "mb_per_s"), None, None)
cu = ratio(fv(cc, "mb_per_s"), fv(disk, "mb_per_s"))
lines.append(("catch-up MB/s / disk MB/s", "-" if cu is None else f"{cu:.3f}", "-", "-", "-", "-",
              ">= 0.5", met(at_least(cu, 0.5))))
if cc is not None and not cc.get("follower_installed_snapshot"):
    lines.append(("catch-up: the follower installed no snapshot", "", "", "", "", "", "", ""))

head = ("measure", "Cairn", "SQLite", "Cairn/SQLite", etcd, "Cairn/etcd", "goal", "met")
w = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
for l in [head] + lines:
    print("  ".join(str(v).ljust(w[i]) if i in (0, 6) else str(v).rjust(w[i]) for i, v in enumerate(l)))
PY

echo "raw results: $OUT ($(($(date +%s) - BEGAN)) s)"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "failed runs: ${FAILED[*]}" >&2
  exit 1
fi
