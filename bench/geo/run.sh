#!/usr/bin/env bash
# Geo-replication benchmark (issue 5): a synthetic geo trace replayed live against three regions
# (us-east, eu-west, ap-southeast, one ternd each) linked through a WAN-emulating proxy, against
# what `ternctl sim` predicts for the same trace and topology.
#
# Environment (default):
#   BIN_DIR (build)          where ternd and ternctl are (relative to the repo root, or absolute);
#                            cmake --build BIN_DIR --target ternd ternctl tcpproxy
#   TCPPROXY (BIN_DIR/tcpproxy)   the test proxy (tests/tools/tcpproxy.c)
#   OUT_DIR (bench/out/geo-<UTC stamp>)   everything the run writes (bench/out/ is git-ignored);
#                            must not exist yet or be empty
#   TOPOLOGY (bench/geo/topology.json)   prices, RTTs, bandwidth, bucket policy ("*": min_regions
#                            2); its regions are the trace's and the live regions
#   SCENARIO (stable-skew), SEED (1)   `ternctl sim gen` scenario and seed (also the sim's --seed)
#   OBJECTS, EVENTS          trace size (300 and 6000; QUICK: 100 and 1500)
#   REPLAY_SECONDS           wall time the replay should take (180; QUICK: 45): TIME_SCALE is the
#                            trace span / this, rounded
#   TIME_SCALE (auto)        ternd --placement-time-scale and the replay's compression
#   BYTES_BUDGET (1000000000)   PUT + GET bytes of the replayed trace at most: sizes are divided
#                            by SIZE_SCALE = ceil(raw PUT + GET bytes / budget), in the trace the
#                            simulator reads too (trace.csv in OUT_DIR)
#   SIZE_SCALE (auto)        force the divisor instead
#   THREADS (12)             replay workers (every key stays on one worker, in order)
#   LAG_INTERVAL (2)         seconds between replication-lag markers
#   BANDWIDTH_MB_PER_S (the topology's bandwidth_mb_per_s, else 100)   proxy bound per connection
#                            and direction, in 10^6 bytes/s
#   SYNC (1)                 0 starts ternd with --no-sync
#   KEEP_DATA (0)            1 keeps the regions' data directories
#   QUICK (0)                1: a small trace and a 45 s replay, for a smoke test (~1.5 minutes)
#   STRICT (0)               1: exit 3 if a target is missed
# Prints the commands it ran (also in OUT_DIR/commands.txt), the replay's progress, and the summary
# with the targets (OUT_DIR/summary.txt, summary.json; raw figures in live.json and sim.json).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
abs() { case "$1" in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  OBJECTS=${OBJECTS:-100} EVENTS=${EVENTS:-1500} REPLAY_SECONDS=${REPLAY_SECONDS:-45}
else
  OBJECTS=${OBJECTS:-300} EVENTS=${EVENTS:-6000} REPLAY_SECONDS=${REPLAY_SECONDS:-180}
fi
BIN_DIR=$(abs "${BIN_DIR:-build}")
TCPPROXY=$(abs "${TCPPROXY:-$BIN_DIR/tcpproxy}")
TOPOLOGY=$(abs "${TOPOLOGY:-bench/geo/topology.json}")
SCENARIO=${SCENARIO:-stable-skew}
SEED=${SEED:-1}
TIME_SCALE=${TIME_SCALE:-}
BYTES_BUDGET=${BYTES_BUDGET:-1000000000}
SIZE_SCALE=${SIZE_SCALE:-0}
THREADS=${THREADS:-12}
LAG_INTERVAL=${LAG_INTERVAL:-2}
BANDWIDTH_MB_PER_S=${BANDWIDTH_MB_PER_S:-}
SYNC=${SYNC:-1}
KEEP_DATA=${KEEP_DATA:-0}
STRICT=${STRICT:-0}
START_TIMEOUT=${START_TIMEOUT:-60}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR=$(abs "${OUT_DIR:-bench/out/geo-$STAMP}")
TERND="$BIN_DIR/ternd"
TERNCTL="$BIN_DIR/ternctl"
DRIVER="$ROOT/bench/geo/replay.py"
PY=/usr/bin/python3
AK=geobench
SK=geobenchsecret

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ -x "$TERND" ] || die "$TERND not found: cmake --build $BIN_DIR --target ternd ternctl tcpproxy"
[ -x "$TERNCTL" ] || die "$TERNCTL not found"
[ -x "$TCPPROXY" ] || die "$TCPPROXY not found (set TCPPROXY)"
[ -r "$TOPOLOGY" ] || die "topology $TOPOLOGY not readable"
[ -x "$PY" ] || die "$PY is needed"
"$PY" -c 'import boto3' 2>/dev/null || die "$PY has no boto3 (apt-get install python3-boto3)"
command -v curl >/dev/null || die "curl is needed to wait for the nodes"
if [ -d "$OUT_DIR" ] && [ -n "$(ls -A "$OUT_DIR")" ]; then die "$OUT_DIR is not empty"; fi
mkdir -p "$OUT_DIR"

COMMANDS="$OUT_DIR/commands.txt"
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n): $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- node placement api ops 2>/dev/null || echo ' (node/ placement/ api/ or ops/ modified in the tree)'); binaries: $BIN_DIR ($("$TERND" --version 2>&1 | head -1), ternd sha256 $(sha256sum "$TERND" | cut -c1-12), built $(date -u -r "$TERND" +%Y-%m-%dT%H:%M:%SZ))"
  echo "QUICK=$QUICK SCENARIO=$SCENARIO SEED=$SEED OBJECTS=$OBJECTS EVENTS=$EVENTS REPLAY_SECONDS=$REPLAY_SECONDS BYTES_BUDGET=$BYTES_BUDGET THREADS=$THREADS SYNC=$SYNC BIN_DIR=$BIN_DIR TCPPROXY=$TCPPROXY bench/geo/run.sh"
} >"$COMMANDS"
# Runs a command after recording it (foreground).
run() {
  echo "$*" >>"$COMMANDS"
  "$@"
}

# ---- processes we start: pid and name; stopped on any exit.
pids=() names=()
alive() {
  local state
  [ -r "/proc/$1/stat" ] || return 1
  read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [ "$state" != Z ]
}
stop_all() {
  trap - EXIT INT TERM
  local pid t live=()
  for pid in "${pids[@]}"; do alive "$pid" && live+=("$pid"); done
  if [ ${#live[@]} -gt 0 ]; then
    log "stopping ${#live[@]} process(es): ${live[*]}"
    for pid in "${live[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((t = 0; t < 150; t++)); do
      local any=0
      for pid in "${live[@]}"; do alive "$pid" && any=1; done
      [ $any = 0 ] && break
      sleep 0.1
    done
    for pid in "${live[@]}"; do
      if alive "$pid"; then
        log "pid $pid still running after 15 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  fi
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  if [ "$KEEP_DATA" != 1 ] && [ -d "$OUT_DIR/data" ]; then rm -rf "$OUT_DIR/data"; fi
}
trap 'stop_all' EXIT
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
check_alive() {
  local n
  for n in "${!pids[@]}"; do
    if ! alive "${pids[$n]}"; then
      die "${names[$n]} (pid ${pids[$n]}) exited; see its log in $OUT_DIR"
    fi
  done
}

# ---- 1. the trace: generated, then sizes scaled into the budget (the sim and live read it).
REGIONS=$("$PY" -c 'import json,sys; print(",".join(r["name"] for r in json.load(open(sys.argv[1]))["regions"]))' "$TOPOLOGY")
IFS=, read -r -a REGION_LIST <<<"$REGIONS"
[ ${#REGION_LIST[@]} -ge 2 ] && [ ${#REGION_LIST[@]} -le 4 ] || die "the topology needs 2 to 4 regions (tcpproxy has 16 routes)"
log "trace: $SCENARIO, seed $SEED, $OBJECTS objects, $EVENTS events, regions $REGIONS"
run "$TERNCTL" sim gen --seed "$SEED" --regions "$REGIONS" --scenario "$SCENARIO" \
  --objects "$OBJECTS" --events "$EVENTS" --out "$OUT_DIR/trace-raw.csv"
run "$PY" "$DRIVER" prepare --in "$OUT_DIR/trace-raw.csv" --out "$OUT_DIR/trace.csv" \
  --info "$OUT_DIR/trace-info.json" --budget "$BYTES_BUDGET" --scale "$SIZE_SCALE" >/dev/null
jget() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
SPAN_MS=$(jget "$OUT_DIR/trace-info.json" span_ms)
SCALE_USED=$(jget "$OUT_DIR/trace-info.json" size_scale)
if [ -z "$TIME_SCALE" ]; then
  TIME_SCALE=$("$PY" -c 'import sys; print(max(1, round(int(sys.argv[1]) / (float(sys.argv[2]) * 1000))))' "$SPAN_MS" "$REPLAY_SECONDS")
fi
if [ -z "$BANDWIDTH_MB_PER_S" ]; then
  BANDWIDTH_MB_PER_S=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("bandwidth_mb_per_s") or 100)' "$TOPOLOGY")
fi
log "sizes / $SCALE_USED: PUT $(jget "$OUT_DIR/trace-info.json" put_bytes) bytes, GET $(jget "$OUT_DIR/trace-info.json" get_bytes) bytes; time scale $TIME_SCALE (span ${SPAN_MS} ms)"

# ---- 2. ports, topologies, the proxy.
n_regions=${#REGION_LIST[@]}
n_routes=$((n_regions * (n_regions - 1)))
read -r -a PORTS <<<"$("$PY" "$DRIVER" ports $((n_regions + n_routes + 1)))"
CONTROL_PORT=${PORTS[0]}
"$PY" - "$OUT_DIR/ports.json" "$REGIONS" "${PORTS[@]:1}" <<'PYEOF'
import json, sys
path, regions, ports = sys.argv[1], sys.argv[2].split(","), [int(p) for p in sys.argv[3:]]
s3 = {r: ports[i] for i, r in enumerate(regions)}
rest = iter(ports[len(regions):])
routes = {f"{a}>{b}": next(rest) for a in regions for b in regions if a != b}
json.dump({"s3": s3, "routes": routes}, open(path, "w"), indent=2)
PYEOF
ROUTES=$(run "$PY" "$DRIVER" topology --base "$TOPOLOGY" --ports "$OUT_DIR/ports.json" --out-dir "$OUT_DIR")
proxy_args=(--control "127.0.0.1:$CONTROL_PORT")
control_lines=()
rate=$("$PY" -c 'import sys; print(int(float(sys.argv[1]) * 1e6))' "$BANDWIDTH_MB_PER_S")
while read -r name listen target rtt; do
  proxy_args+=(--route "$name=127.0.0.1:$listen->127.0.0.1:$target")
  # Half the RTT each way (rounded up to whole ms; bench/geo/topology.json's RTTs are even, so
  # the emulated RTT is the topology's): a request and its answer cross one route.
  control_lines+=("delay $name $(((rtt + 1) / 2))" "bandwidth $name $rate")
done <<<"$ROUTES"
echo "$TCPPROXY ${proxy_args[*]} > $OUT_DIR/tcpproxy.log 2>&1 &" >>"$COMMANDS"
"$TCPPROXY" "${proxy_args[@]}" >"$OUT_DIR/tcpproxy.log" 2>&1 &
pids+=("$!") names+=(tcpproxy)
for ((t = 0; t < 50; t++)); do
  grep -q ready "$OUT_DIR/tcpproxy.log" 2>/dev/null && break
  check_alive
  sleep 0.1
done
grep -q ready "$OUT_DIR/tcpproxy.log" || die "tcpproxy did not start (see $OUT_DIR/tcpproxy.log)"
run "$PY" "$DRIVER" proxy --control "127.0.0.1:$CONTROL_PORT" "${control_lines[@]}" >"$OUT_DIR/proxy-setup.txt" ||
  die "proxy setup failed: $(cat "$OUT_DIR/proxy-setup.txt")"

# ---- 3. the regions.
s3_port() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["s3"][sys.argv[2]])' "$OUT_DIR/ports.json" "$1"; }
sync_flag=()
[ "$SYNC" = 1 ] || sync_flag=(--no-sync)
ENDPOINTS=""
for region in "${REGION_LIST[@]}"; do
  port=$(s3_port "$region")
  ENDPOINTS="${ENDPOINTS:+$ENDPOINTS,}$region=http://127.0.0.1:$port"
  mkdir -p "$OUT_DIR/data/$region"
  args=(--topology "$OUT_DIR/topology-$region.json" --region "$region" --data-dir "$OUT_DIR/data/$region"
    --s3-listen "127.0.0.1:$port" --root-access-key "$AK" --root-secret-key "$SK"
    --placement-time-scale "$TIME_SCALE" "${sync_flag[@]}")
  echo "$TERND ${args[*]} > $OUT_DIR/ternd-$region.log 2>&1 &" >>"$COMMANDS"
  "$TERND" "${args[@]}" >"$OUT_DIR/ternd-$region.log" 2>&1 &
  pids+=("$!") names+=("ternd $region")
done
log "regions starting: $ENDPOINTS (time scale $TIME_SCALE), proxy control 127.0.0.1:$CONTROL_PORT"
deadline=$((SECONDS + START_TIMEOUT))
for region in "${REGION_LIST[@]}"; do
  port=$(s3_port "$region")
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz")" = 200 ]; do
    check_alive
    [ $SECONDS -lt $deadline ] || die "$region (127.0.0.1:$port) not ready within ${START_TIMEOUT}s"
    sleep 0.2
  done
done
log "regions ready"

# ---- 4. the live replay.
run "$PY" -u "$DRIVER" replay --trace "$OUT_DIR/trace.csv" --endpoints "$ENDPOINTS" \
  --access-key "$AK" --secret-key "$SK" --time-scale "$TIME_SCALE" --threads "$THREADS" \
  --lag-interval "$LAG_INTERVAL" --proxy-control "127.0.0.1:$CONTROL_PORT" --out "$OUT_DIR/live.json"
check_alive
stop_all
trap 'stop_all' EXIT

# ---- 5. the simulator on the same trace and topology (no endpoints).
run "$TERNCTL" -o json sim --topology "$OUT_DIR/topology-sim.json" --trace "$OUT_DIR/trace.csv" \
  --seed "$SEED" --compare --plot "$OUT_DIR/sim-cost.svg" >"$OUT_DIR/sim.json"
echo "  (> $OUT_DIR/sim.json)" >>"$COMMANDS"

echo "== commands"
cat "$COMMANDS"
echo

set +e
"$PY" "$DRIVER" summarize --live "$OUT_DIR/live.json" --sim "$OUT_DIR/sim.json" \
  --info "$OUT_DIR/trace-info.json" --out-dir "$OUT_DIR"
status=$?
set -e
case "$status" in
  0) ;;
  3) [ "$STRICT" = 1 ] && exit 3 ;;
  *) die "the summary failed (exit $status)" ;;
esac
exit 0
