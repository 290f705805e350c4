#!/usr/bin/env bash
# Runs three tern regions on loopback until Ctrl-C (or SIGTERM): us-east, eu-west and
# ap-southeast, each a region group of NODES nodes (1 by default), linked by geo-replication
# through a topology modelled on those regions' list prices. Data and logs under DIR. This is
# what `make run` starts (with DIR ./data).
#
# Usage: scripts/run-regions.sh [BUILD_DIR] [DIR]   (defaults: build, ./data-regions)
# S3 of region k (1..3), node i: 127.0.0.1:9k0i (9101, 9201, 9301 with one node each); peers
# (NODES > 1) on 127.0.0.1:7k0i. Root credentials (shared by the regions) come from
# TERN_ROOT_ACCESS_KEY / TERN_ROOT_SECRET_KEY or default to a fixed local pair, printed at start.
#
# The endpoints are printed once every node answers HTTP on its S3 port and every region has a
# leader (/readyz 200), within START_TIMEOUT seconds (60). A port already in use, a node that
# exits (at start or later) or a start that times out stops every node and exits 1, with the
# failed node's log tail. Ctrl-C / SIGTERM stops every node (SIGTERM, then SIGKILL for any still
# running after STOP_TIMEOUT seconds, 15) and exits 130 / 143.
# shellcheck disable=SC2317 # stop and any_alive run from the traps
set -euo pipefail

BUILD=${1:-build}
DIR=${2:-./data-regions}
NODES=${NODES:-1}
START_TIMEOUT=${START_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-15}
AK=${TERN_ROOT_ACCESS_KEY:-ternlocal}
SK=${TERN_ROOT_SECRET_KEY:-ternlocalsecret}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REGIONS=(us-east eu-west ap-southeast)

die() {
  echo "run-regions: $*" >&2
  exit 1
}

# The port scheme 9k0i leaves room for nine nodes per region.
[[ $NODES =~ ^[1-9]$ ]] || die "NODES must be 1 to 9 (got '$NODES')"
[ -x "$BUILD/ternd" ] || die "no ternd in $BUILD (run 'make build', or pass the build directory)"
command -v curl >/dev/null || die "curl is needed to wait for the nodes (apt-get install curl)"

s3_port() { echo $((9000 + 100 * $1 + $2)); }
peer_port() { echo $((7000 + 100 * $1 + $2)); }
ids=$(seq 1 "$NODES")

# Refuse before starting anything if a port answers already (another `make run`, a leftover
# ternd): otherwise the new node would fail to bind, or worse, the wait below would be answered
# by the old process. A port bound but not listening is caught when ternd fails to bind.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for k in 1 2 3; do
  for i in $ids; do
    ports=("$(s3_port "$k" "$i")")
    [ "$NODES" -gt 1 ] && ports+=("$(peer_port "$k" "$i")")
    for p in "${ports[@]}"; do
      if port_busy "$p"; then
        die "port 127.0.0.1:$p (${REGIONS[$((k - 1))]} node $i) is already in use: is another" \
          "'make run' or ternd running? ('ss -ltnp sport = :$p' shows the process)"
      fi
    done
  done
done

mkdir -p "$DIR"
if [ "$NODES" -gt 1 ] && [ ! -f "$DIR/ca/ca.crt" ]; then
  # shellcheck disable=SC2086
  sh "$ROOT/scripts/gen-test-ca.sh" "$DIR/ca" $ids >/dev/null
fi

# The topology: list prices per GB (egress within North America / Europe $0.02, out of
# Asia-Pacific $0.09, into it $0.08), storage per GB-month, RTTs between the regions.
endpoints() {
  local k=$1 out="" i
  for i in $ids; do out="${out:+$out, }\"http://127.0.0.1:$(s3_port "$k" "$i")\""; done
  echo "$out"
}
cat >"$DIR/topology.json" <<JSON
{
  "regions": [
    {"name": "us-east", "storage_usd_per_gb_month": 0.023, "s3_endpoints": [$(endpoints 1)]},
    {"name": "eu-west", "storage_usd_per_gb_month": 0.023, "s3_endpoints": [$(endpoints 2)]},
    {"name": "ap-southeast", "storage_usd_per_gb_month": 0.025, "s3_endpoints": [$(endpoints 3)]}
  ],
  "egress_usd_per_gb": {
    "us-east": {"eu-west": 0.02, "ap-southeast": 0.08},
    "eu-west": {"us-east": 0.02, "ap-southeast": 0.08},
    "ap-southeast": {"us-east": 0.09, "eu-west": 0.09}
  },
  "rtt_ms": {
    "us-east": {"eu-west": 75, "ap-southeast": 215},
    "eu-west": {"us-east": 75, "ap-southeast": 170},
    "ap-southeast": {"us-east": 215, "eu-west": 170}
  },
  "buckets": {"*": {"min_regions": 2}}
}
JSON

# One entry per node started: pid, name, log, S3 port. A node reaped by wait leaves pids.
pids=() names=() logs=() ports=()

# A child that exited but is not reaped yet still has /proc/PID: look at its state.
alive() {
  local state
  [ -r "/proc/$1/stat" ] || return 1
  read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [ "$state" != Z ]
}

any_alive() {
  local pid
  for pid in "$@"; do alive "$pid" && return 0; done
  return 1
}

stop() {
  trap - EXIT
  trap '' INT TERM # a second Ctrl-C must not leave nodes behind; the stop is bounded anyway
  local live=() pid t
  for pid in "${pids[@]}"; do alive "$pid" && live+=("$pid"); done
  if [ ${#live[@]} -gt 0 ]; then
    echo "stopping ${#live[@]} node(s)"
    for pid in "${live[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # ternd drains in-flight requests for up to its shutdown grace (10 s): past STOP_TIMEOUT, kill.
    for ((t = 0; t < STOP_TIMEOUT * 10; t++)); do
      any_alive "${live[@]}" || break
      sleep 0.1
    done
    for pid in "${live[@]}"; do
      if alive "$pid"; then
        echo "run-regions: node pid $pid still running after ${STOP_TIMEOUT}s: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
  fi
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ ${#live[@]} -eq 0 ] || echo "stopped"
  pids=()
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM
trap stop EXIT

# Node n failed: say which, show its log tail, and exit 1 (the EXIT trap stops the others).
fail_node() {
  local n=$1 why=$2 status=0
  if ! alive "${pids[$n]}"; then
    wait "${pids[$n]}" 2>/dev/null || status=$?
    why="$why (exit status $status)"
  fi
  {
    echo "run-regions: ${names[$n]} $why; the last lines of ${logs[$n]}:"
    tail -n 20 "${logs[$n]}" 2>/dev/null | sed 's/^/  | /'
  } >&2
  exit 1
}

for k in 1 2 3; do
  region=${REGIONS[$((k - 1))]}
  peers=""
  for i in $ids; do peers="${peers:+$peers,}$i=127.0.0.1:$(peer_port "$k" "$i")"; done
  for i in $ids; do
    args=(--region "$region" --node-id "$i" --data-dir "$DIR/$region/node$i"
      --s3-listen "127.0.0.1:$(s3_port "$k" "$i")" --topology "$DIR/topology.json"
      --root-access-key "$AK" --root-secret-key "$SK")
    if [ "$NODES" -gt 1 ]; then
      args+=(--peer-listen "127.0.0.1:$(peer_port "$k" "$i")" --peers "$peers"
        --peer-ca "$DIR/ca/ca.crt" --peer-cert "$DIR/ca/node-$i.crt"
        --peer-key "$DIR/ca/node-$i.key")
    fi
    mkdir -p "$DIR/$region"
    "$BUILD/ternd" "${args[@]}" >"$DIR/$region/node$i.log" 2>&1 &
    pids+=("$!")
    names+=("$region node $i")
    logs+=("$DIR/$region/node$i.log")
    ports+=("$(s3_port "$k" "$i")")
  done
done

echo "starting three tern regions, $NODES node(s) each (topology, data and logs under $DIR)..."
# Wait, bounded, for every node's S3 port to answer HTTP (any status), then for every region to
# have a leader. A node that exits meanwhile is reported at once.
http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1$2"; }
check_alive() {
  local n
  for n in "${!pids[@]}"; do alive "${pids[$n]}" || fail_node "$n" "exited during start"; done
}
deadline=$((SECONDS + START_TIMEOUT))
for n in "${!pids[@]}"; do
  until http_status "${ports[$n]}" / >/dev/null; do
    check_alive
    [ $SECONDS -lt $deadline ] || fail_node "$n" "did not answer on 127.0.0.1:${ports[$n]} within ${START_TIMEOUT}s"
    sleep 0.2
  done
done
region_ready() {
  local i
  for i in $ids; do [ "$(http_status "$(s3_port "$1" "$i")" /readyz)" = 200 ] && return 0; done
  return 1
}
for k in 1 2 3; do
  until region_ready "$k"; do
    check_alive
    if [ $SECONDS -ge $deadline ]; then
      fail_node $(((k - 1) * NODES)) "(region ${REGIONS[$((k - 1))]}) has no leader after ${START_TIMEOUT}s"
    fi
    sleep 0.2
  done
done
check_alive

echo "ready: three tern regions, $NODES node(s) each"
for k in 1 2 3; do
  list=""
  for i in $ids; do list="${list:+$list }http://127.0.0.1:$(s3_port "$k" "$i")"; done
  printf '  %-13s S3 %s\n' "${REGIONS[$((k - 1))]}" "$list"
done
echo "  access key $AK, secret key $SK (the same in every region)"
echo "  $BUILD/ternctl --endpoint http://127.0.0.1:9101 --access-key $AK --secret-key $SK egress"
echo "  a geo-skewed workload: make demo (in another terminal)"
echo "Ctrl-C stops every node."

# Until a signal (the traps exit) or a node exits on its own (a failure: report it and stop).
set +e
wait -n -p exited "${pids[@]}"
status=$?
set -e
for n in "${!pids[@]}"; do
  if [ "${pids[$n]}" = "${exited:-}" ]; then
    unset "pids[$n]" # reaped by wait -n
    {
      echo "run-regions: ${names[$n]} exited (status $status); the last lines of ${logs[$n]}:"
      tail -n 20 "${logs[$n]}" 2>/dev/null | sed 's/^/  | /'
    } >&2
    exit 1
  fi
done
exit 1
