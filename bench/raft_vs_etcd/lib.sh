# Functions shared by bench/raft_vs_etcd/run.sh and failover.sh (sourced, not run): etcd and
# tern clusters on loopback, leader discovery, wrk runs, failover trials.
# Every wait is bounded; every process started is recorded so that cleanup can stop it.
# shellcheck shell=bash
# shellcheck disable=SC2034  # variables set here are read by the sourcing scripts

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/bench/raft_vs_etcd"
PY=/usr/bin/python3
HELPER="$HERE/raftbench.py"
OUT_DIR="$ROOT/bench/out"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
AK=AKBENCHROOT000000001
SK=bench-secret-key-0123456789
BUCKET=bench

BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
KEEP=${KEEP:-0}
SINGLE=${SINGLE:-0}
REGION=${REGION:-bench}
TERND_ARGS=${TERND_ARGS:-}
ETCD_ARGS=${ETCD_ARGS:-}
VALUE_SIZE=${VALUE_SIZE:-256}
READY_TIMEOUT=${READY_TIMEOUT:-60}
FAILOVER_TRIALS=${FAILOVER_TRIALS:-20}
FAILOVER_TIMEOUT=${FAILOVER_TIMEOUT:-30}
FAILOVER_INTERVAL_MS=${FAILOVER_INTERVAL_MS:-5}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-60}
CATCHUP_SETTLE=${CATCHUP_SETTLE:-1}

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# alive PID: the process exists and is not a zombie (an exited child not yet reaped by wait).
alive() {
  local state
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

# stop_pid PID SIGNAL SECONDS: signals, waits (bounded), SIGKILLs a survivor, reaps it; sets
# STOPPED_RC to its exit status (128 + signal for a signal). Not in $(...): only the shell
# that started a process can wait for it.
stop_pid() {
  local pid=$1 sig=$2 limit=$3 i
  STOPPED_RC=0
  [ -n "$pid" ] || return 0
  if alive "$pid"; then
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < limit * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      log "pid $pid still alive ${limit}s after SIG$sig: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || STOPPED_RC=$?
}

# record JSON: appends one line to the raw results.
record() { echo "$1" | jq -c . >>"$RAW"; }
note() {
  log "note: $1"
  jq -nc --arg t "$1" '{kind:"note", text:$t}' >>"$RAW"
}

record_machine() {
  local cpu nproc mem disk fs etcdv wrkv
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  nproc=$(nproc)
  mem=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  disk=$(df -P "$WORK" | awk 'NR == 2 {print $1}')
  fs=$(df -PT "$WORK" | awk 'NR == 2 {print $2}')
  etcdv=$(etcd --version 2>/dev/null | head -1 || true)
  wrkv=$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}' || true)
  log "machine: $nproc x $cpu, $((mem / 1024)) MiB RAM; disk $disk ($fs) at $WORK; load $(cat /proc/loadavg)"
  jq -nc --arg date "$STAMP" --arg cpu "$cpu" --argjson nproc "$nproc" --argjson mem_kib "$mem" \
    --arg disk "$disk" --arg fs "$fs" --arg dir "$WORK" --arg kernel "$(uname -r)" \
    --arg git "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
    --arg load "$(cat /proc/loadavg)" --arg etcd "$etcdv" --arg wrk "$wrkv" \
    --arg mode "$1" --argjson single "$SINGLE" --arg ternd_args "$TERND_ARGS" \
    --arg etcd_args "$ETCD_ARGS" --argjson value "$VALUE_SIZE" \
    --arg ternd "${TERND:-}" --arg ternd_mtime "$(date -u -r "${TERND:-/nonexistent}" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || true)" \
    --arg skip_build "${SKIP_BUILD:-0}" \
    '{kind:"machine", date:$date, mode:$mode, cpu_model:$cpu, nproc:$nproc, mem_kib:$mem_kib,
      disk:$disk, fs:$fs, dir:$dir, kernel:$kernel, git:$git, loadavg_start:$load,
      etcd_version:$etcd, wrk_version:$wrk, single:($single == 1), ternd_args:$ternd_args,
      etcd_args:$etcd_args, value_bytes:$value, ternd:$ternd, ternd_built:$ternd_mtime,
      skip_build:($skip_build == "1")}' >>"$RAW"
}

# ---------------------------------------------------------------- processes and cleanup
ETCD_PIDS=()
TERN_PIDS=()
WRK_PIDS=()

stop_everything() {
  local p
  for p in "${WRK_PIDS[@]}" "${ETCD_PIDS[@]}" "${TERN_PIDS[@]}"; do
    if alive "$p"; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  local i any
  for ((i = 0; i < 150; i++)); do
    any=0
    for p in "${WRK_PIDS[@]}" "${ETCD_PIDS[@]}" "${TERN_PIDS[@]}"; do
      alive "$p" && any=1
    done
    ((any)) || break
    sleep 0.1
  done
  for p in "${WRK_PIDS[@]}" "${ETCD_PIDS[@]}" "${TERN_PIDS[@]}"; do
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  return 0
}

# bench_init NAME BUILD: builds ternd unless SKIP_BUILD=1 (when BUILD is 1), makes the work
# directory, the raw and summary file names, and the exit trap that stops every process.
bench_init() {
  if [ "$2" = 1 ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "building ternd in $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DTERN_SANITIZERS=OFF >/dev/null
    ninja -C "$BUILD_DIR" -j2 ternd >&2
  fi
  TERND="$BUILD_DIR/ternd"
  mkdir -p "$OUT_DIR"
  WORK=$(mktemp -d "$BENCH_TMP/tern-raft-bench.XXXXXX")
  RAW="$OUT_DIR/$1-$STAMP.jsonl"
  SUMMARY="$OUT_DIR/$1-$STAMP.json"
  : >"$RAW"
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

# shellcheck disable=SC2317  # a trap handler
bench_cleanup() {
  local rc=$?
  stop_everything
  if [ -z "${WORK:-}" ]; then :; elif [ "$KEEP" != 1 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
  exit "$rc"
}

# ---------------------------------------------------------------- etcd
ETCD_CLIENT_URLS=()

# etcd_start: a 3-member etcd cluster on loopback with its defaults (fsync on, heartbeat
# 100 ms, election timeout 1000 ms), data under $WORK/etcd-N; waits for /health on all.
etcd_start() {
  local i cluster="" peer_ports=() client_ports=()
  for i in 1 2 3; do
    peer_ports[i]=$(free_port)
    client_ports[i]=$(free_port)
    cluster+="${cluster:+,}e$i=http://127.0.0.1:${peer_ports[i]}"
  done
  for i in 1 2 3; do
    ETCD_CLIENT_URLS[i]="http://127.0.0.1:${client_ports[i]}"
    # shellcheck disable=SC2086  # ETCD_ARGS is a list of flags
    etcd --name "e$i" --data-dir "$WORK/etcd-$i" --logger zap --log-outputs stderr \
      --listen-client-urls "${ETCD_CLIENT_URLS[i]}" --advertise-client-urls "${ETCD_CLIENT_URLS[i]}" \
      --listen-peer-urls "http://127.0.0.1:${peer_ports[i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[i]}" \
      --initial-cluster "$cluster" --initial-cluster-token "tern-bench-$STAMP" \
      --initial-cluster-state new $ETCD_ARGS >>"$WORK/etcd-$i.log" 2>&1 &
    ETCD_PIDS[i]=$!
  done
  log "etcd: 3 members, clients ${ETCD_CLIENT_URLS[*]}"
  for i in 1 2 3; do
    wait_etcd_healthy "$i" "$READY_TIMEOUT" ||
      { tail -20 "$WORK/etcd-$i.log" >&2; die "etcd member $i not healthy after ${READY_TIMEOUT}s"; }
  done
}

wait_etcd_healthy() { # wait_etcd_healthy N SECONDS: /health says true (the member has a leader)
  local deadline=$((SECONDS + $2)) i
  for ((i = 0; i < 100000; i++)); do
    curl -s --max-time 1 "${ETCD_CLIENT_URLS[$1]}/health" 2>/dev/null | jq -e '.health == "true"' >/dev/null 2>&1 && return 0
    alive "${ETCD_PIDS[$1]}" || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
  return 1
}

etcd_leader() { # prints the index (1..3) of the member that is leader, or nothing
  local i status
  for i in 1 2 3; do
    status=$(curl -s --max-time 2 -X POST -d '{}' "${ETCD_CLIENT_URLS[i]}/v3/maintenance/status") || continue
    if echo "$status" | jq -e '.leader != null and .leader == .header.member_id' >/dev/null 2>&1; then
      echo "$i"
      return 0
    fi
  done
}

etcd_stop() {
  local i
  for i in 1 2 3; do
    stop_pid "${ETCD_PIDS[i]}" TERM 30
    log "etcd member $i exited with $STOPPED_RC"
    ETCD_PIDS[i]=""
  done
  [ "$KEEP" = 1 ] || rm -rf "$WORK"/etcd-[123]
}

# ---------------------------------------------------------------- tern
TERN_NODES=3
TERN_S3_URLS=()
TERN_PEER_PORTS=()
TERN_RESTARTS=()

tern_setup() { # chooses ports, makes the certificates; SINGLE=1 means one node without --peers
  local i
  TERN_NODES=3
  [ "$SINGLE" = 1 ] && TERN_NODES=1
  TERN_PEERS=""
  for ((i = 1; i <= TERN_NODES; i++)); do
    TERN_S3_URLS[i]="http://127.0.0.1:$(free_port)"
    TERN_PEER_PORTS[i]=$(free_port)
    TERN_RESTARTS[i]=0
    ((TERN_NODES > 1)) && TERN_PEERS+="${TERN_PEERS:+,}$i=127.0.0.1:${TERN_PEER_PORTS[i]}"
  done
  if ((TERN_NODES > 1)); then
    sh "$ROOT/scripts/gen-test-ca.sh" "$WORK/certs" 1 2 3 || die "gen-test-ca.sh failed"
  fi
}

tern_start_node() { # tern_start_node N: starts node N (its data dir survives restarts)
  local n=$1 args=()
  args=(--region "$REGION" --node-id "$n" --s3-listen "${TERN_S3_URLS[n]#http://}"
    --data-dir "$WORK/tern-$n" --root-access-key "$AK" --root-secret-key "$SK")
  if ((TERN_NODES > 1)); then
    args+=(--peer-listen "127.0.0.1:${TERN_PEER_PORTS[n]}" --peers "$TERN_PEERS"
      --peer-ca "$WORK/certs/ca.crt" --peer-cert "$WORK/certs/node-$n.crt"
      --peer-key "$WORK/certs/node-$n.key")
  fi
  echo "=== start $(date -u +%H:%M:%S.%N) (restart ${TERN_RESTARTS[n]})" >>"$WORK/tern-$n.log"
  # shellcheck disable=SC2086  # TERND_ARGS is a list of flags
  "$TERND" "${args[@]}" $TERND_ARGS >>"$WORK/tern-$n.log" 2>&1 &
  TERN_PIDS[n]=$!
}

wait_tern_ready() { # wait_tern_ready N SECONDS: /readyz 200 (in a region: it has a leader)
  local n=$1 deadline=$((SECONDS + $2)) i
  for ((i = 0; i < 100000; i++)); do
    curl -sf -o /dev/null --max-time 1 "${TERN_S3_URLS[n]}/readyz" && return 0
    alive "${TERN_PIDS[n]}" || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
  return 1
}

tern_start() {
  local n
  [ -x "$TERND" ] || die "missing $TERND"
  local help
  help=$("$TERND" --help 2>&1 || true) # not piped into grep -q: SIGPIPE would fail pipefail
  if ((TERN_NODES > 1)) && [[ "$help" != *--peers* ]]; then
    die "$TERND has no --peers: this build cannot run a region (SINGLE=1 runs one node)"
  fi
  for ((n = 1; n <= TERN_NODES; n++)); do tern_start_node "$n"; done
  log "tern: $TERN_NODES node(s), S3 ${TERN_S3_URLS[*]:1}${TERN_PEERS:+, peers $TERN_PEERS}"
  for ((n = 1; n <= TERN_NODES; n++)); do
    wait_tern_ready "$n" "$READY_TIMEOUT" ||
      { tail -20 "$WORK/tern-$n.log" >&2; die "tern node $n not ready after ${READY_TIMEOUT}s"; }
  done
  "$PY" "$HELPER" mkbucket --endpoint "${TERN_S3_URLS[1]}" --region "$REGION" --access-key "$AK" \
    --secret-key "$SK" --bucket "$BUCKET" --timeout "$READY_TIMEOUT" || die "create bucket failed"
}

tern_stop() {
  local n
  for ((n = 1; n <= TERN_NODES; n++)); do
    [ -n "${TERN_PIDS[n]:-}" ] || continue
    stop_pid "${TERN_PIDS[n]}" TERM 30
    log "tern node $n exited with $STOPPED_RC"
    jq -nc --argjson n "$n" --argjson rc "$STOPPED_RC" --arg load "$(cat /proc/loadavg)" \
      '{kind:"ternd_exit", node:$n, exit_code:$rc, loadavg_end:$load}' >>"$RAW"
    TERN_PIDS[n]=""
  done
}

metric_value() { # metric_value N NAME: the value of an unlabelled or labelled gauge on node N
  local text
  text=$(curl -s --max-time 1 "${TERN_S3_URLS[$1]}/metrics" 2>/dev/null) || return 0
  awk -v name="$2" '!found && ($1 == name || index($1, name "{") == 1) {print $2; found = 1}' <<<"$text"
}

# tern_leader: prints the leader's node id, or nothing when no node can be identified.
# First /metrics (`tern_raft_leader 1` on the leader, exactly one node), then the admin
# status JSON (/_tern/cluster, /_tern/status) for a leader id under a few likely names.
tern_leader() {
  local n v found=() json id path
  ((TERN_NODES == 1)) && { echo 1; return 0; }
  for ((n = 1; n <= TERN_NODES; n++)); do
    alive "${TERN_PIDS[n]:-}" || continue
    v=$(metric_value "$n" tern_raft_leader)
    [[ "$v" =~ ^1(\.0*)?$ ]] && found+=("$n")
  done
  if ((${#found[@]} == 1)); then
    echo "${found[0]}"
    return 0
  fi
  for path in /_tern/cluster /_tern/status; do
    for ((n = 1; n <= TERN_NODES; n++)); do
      alive "${TERN_PIDS[n]:-}" || continue
      json=$(curl -sf --max-time 2 --aws-sigv4 "aws:amz:$REGION:s3" --user "$AK:$SK" \
        "${TERN_S3_URLS[n]}$path" 2>/dev/null) || continue
      id=$(echo "$json" | jq -r '[.leader_id, .raft.leader_id, .raft.leader, .cluster.leader_id,
        .region.leader_id, .leader.node_id, .leader.id, .leader] | map(select(type == "number"))
        | first // empty' 2>/dev/null) || continue
      if [[ "$id" =~ ^[1-9][0-9]*$ ]] && ((id <= TERN_NODES)); then
        echo "$id"
        return 0
      fi
    done
  done
}

# tern_wait_leader SECONDS: prints the leader once one is identified (bounded), or nothing.
tern_wait_leader() {
  local deadline=$((SECONDS + $1)) i id
  for ((i = 0; i < 10000; i++)); do
    id=$(tern_leader)
    [ -n "$id" ] && { echo "$id"; return 0; }
    ((SECONDS < deadline)) || return 0
    sleep 0.1
  done
}

# ---------------------------------------------------------------- wrk
# run_wrk SYSTEM SECONDS LABEL: runs wrk against the targets in WRK_URLS (with WRK_URL_FILES
# for tern), one process for one target (-t$THREADS -c$CLIENTS) or one per target (-t1, the
# clients split), all in parallel under a hard timeout. Writes the merged JSON to
# $WORK/wrk-LABEL.json. Runs in the main shell (not in $(...)) so that cleanup knows the pids.
# shellcheck disable=SC2153  # THREADS, CLIENTS and WRK_TIMEOUT are set by run.sh
run_wrk() {
  local system=$1 seconds=$2 label=$3 k n=${#WRK_URLS[@]} c threads outs=() rc=0 script
  script="$HERE/put_$system.lua"
  WRK_PIDS=()
  for ((k = 0; k < n; k++)); do
    c=$((CLIENTS / n + (k < CLIENTS % n ? 1 : 0)))
    threads=$THREADS
    ((n > 1)) && threads=1
    ((threads > c)) && threads=$c
    outs[k]="$WORK/wrk-$label-$k.json"
    rm -f "${outs[k]}"
    BENCH_LUA_DIR=$HERE WRK_OUT=${outs[k]} VALUE_SIZE=$VALUE_SIZE KEY_PREFIX="$label/p$k-" \
      URL_FILE=${WRK_URL_FILES[k]:-} timeout --signal=TERM --kill-after=10 $((seconds + 120)) \
      wrk -t"$threads" -c"$c" -d"${seconds}s" --timeout "${WRK_TIMEOUT}s" --latency -s "$script" \
      "${WRK_URLS[k]}" >"$WORK/wrk-$label-$k.log" 2>&1 &
    WRK_PIDS[k]=$!
  done
  for ((k = 0; k < n; k++)); do
    wait "${WRK_PIDS[k]}" || { rc=$?; log "wrk $label/$k exit status $rc"; }
  done
  WRK_PIDS=()
  for ((k = 0; k < n; k++)); do
    [ -s "${outs[k]}" ] || { cat "$WORK/wrk-$label-$k.log" >&2; return 1; }
  done
  "$PY" "$HELPER" wrk-merge --connections "$CLIENTS" "${outs[@]}" >"$WORK/wrk-$label.json"
}

# ---------------------------------------------------------------- failover
# tern_caught_up N: after a restart of node N, waits (bounded) until it has applied what the
# leader has committed, if /metrics exposes Raft indexes; otherwise until one PUT through it
# succeeds, then CATCHUP_SETTLE seconds. Prints how it decided.
tern_caught_up() {
  local n=$1 leader name target mine deadline=$((SECONDS + CATCHUP_TIMEOUT)) i
  leader=$(tern_wait_leader "$CATCHUP_TIMEOUT")
  for name in tern_raft_applied_index tern_raft_commit_index; do
    [ -n "$leader" ] || break
    target=$(metric_value "$leader" tern_raft_commit_index)
    [ -n "$target" ] || target=$(metric_value "$leader" "$name")
    mine=$(metric_value "$n" "$name")
    [[ "$target" =~ ^[0-9]+$ && "$mine" =~ ^[0-9]+$ ]] || continue
    for ((i = 0; i < 100000; i++)); do
      mine=$(metric_value "$n" "$name")
      [[ "$mine" =~ ^[0-9]+$ ]] && ((mine >= target)) && { echo "$name $mine >= leader commit $target"; return 0; }
      ((SECONDS < deadline)) || { echo "timeout: $name ${mine:-?} < $target"; return 1; }
      sleep 0.1
    done
  done
  for ((i = 0; i < 100000; i++)); do
    if "$PY" "$HELPER" put-once --endpoint "${TERN_S3_URLS[n]}" --region "$REGION" --access-key "$AK" \
      --secret-key "$SK" --bucket "$BUCKET" --key "catchup-$n-$i" --timeout 2; then
      sleep "$CATCHUP_SETTLE"
      echo "no Raft index metrics: a PUT through node $n succeeded, then ${CATCHUP_SETTLE}s"
      return 0
    fi
    ((SECONDS < deadline)) || { echo "timeout: no PUT through node $n succeeded"; return 1; }
    sleep 0.2
  done
  return 1
}

# failover_trials: FAILOVER_TRIALS times: find the leader, start writers on the survivors,
# SIGKILL the leader (raftbench.py does the kill and the timing), restart it, wait until it
# is ready and caught up. Appends one failover_trial line per trial to $RAW.
failover_trials() {
  local t leader survivors n json rc how
  ((TERN_NODES == 3)) || { note "failover skipped: needs the 3-node region (SINGLE=0)"; return 0; }
  for ((t = 1; t <= FAILOVER_TRIALS; t++)); do
    leader=$(tern_wait_leader "$READY_TIMEOUT")
    if [ -z "$leader" ]; then
      note "failover stopped at trial $t: no node identifies as leader (neither /metrics tern_raft_leader nor /_tern/cluster)"
      return 0
    fi
    survivors=""
    for ((n = 1; n <= TERN_NODES; n++)); do
      ((n == leader)) || survivors+="${survivors:+,}${TERN_S3_URLS[n]}"
    done
    log "failover trial $t/$FAILOVER_TRIALS: leader is node $leader (pid ${TERN_PIDS[leader]}); writers on $survivors"
    json=$("$PY" "$HELPER" failover-trial --endpoints "$survivors" --pid "${TERN_PIDS[leader]}" \
      --node-id "$leader" --trial "$t" --prefix "failover-$t-" --value-size "$VALUE_SIZE" \
      --interval-ms "$FAILOVER_INTERVAL_MS" --timeout "$FAILOVER_TIMEOUT" --region "$REGION" \
      --access-key "$AK" --secret-key "$SK" --bucket "$BUCKET") || true
    stop_pid "${TERN_PIDS[leader]}" KILL 10
    rc=$STOPPED_RC
    [ -n "$json" ] || json=$(jq -nc --argjson t "$t" '{kind:"failover_trial", trial:$t, error:"writer produced no result"}')
    log "  $(echo "$json" | jq -r '"failover \(.failover_s // "none") s, first ok via \(.first_ok_endpoint // "-"), failures before it \(.failures_before_first_ok // {} | tostring)\(if .error then ", error: " + .error else "" end)"')"
    TERN_RESTARTS[leader]=$((TERN_RESTARTS[leader] + 1))
    tern_start_node "$leader"
    if ! wait_tern_ready "$leader" "$READY_TIMEOUT"; then
      tail -20 "$WORK/tern-$leader.log" >&2
      record "$(echo "$json" | jq -c --argjson rc "$rc" '. + {killed_exit: $rc, restart:"not ready"}')"
      die "node $leader not ready ${READY_TIMEOUT}s after its restart"
    fi
    how=$(tern_caught_up "$leader") || {
      record "$(echo "$json" | jq -c --argjson rc "$rc" --arg how "$how" '. + {killed_exit: $rc, caught_up:$how}')"
      die "node $leader did not catch up: $how"
    }
    log "  node $leader restarted and caught up ($how)"
    record "$(echo "$json" | jq -c --argjson rc "$rc" --arg how "$how" '. + {killed_exit: $rc, caught_up:$how}')"
  done
}
