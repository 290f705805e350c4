#!/usr/bin/env bash
# Raft write benchmark: a 3-node tern region (S3 PUT of small objects) against a 3-member
# etcd 3.4 cluster (PUT through its v3 JSON gateway) on this machine, the same wrk load,
# fsync on in both; then leader failover of the tern region. Prints a table, writes JSON
# under bench/out/. See bench/raft_vs_etcd/README.md.
#
# Environment (default):
#   DURATION (30)            seconds of each measured wrk run
#   WARMUP (5)               seconds of the same load before it, not measured (0 skips)
#   CLIENTS (64)             concurrent connections (wrk -c)
#   THREADS (2)              wrk threads when one wrk process drives one target
#   VALUE_SIZE (256)         bytes per value / object
#   TARGET (leader)          leader: all clients on the leader (etcd's and tern's), one wrk
#                            -t$THREADS -c$CLIENTS, exact percentiles; all: one wrk per member
#                            (-t1, 22/21/21 connections), throughput summed, percentiles merged
#   SYSTEMS ("etcd tern")    which systems to measure, in this order
#   SINGLE (0)               1: tern as one node without --peers (sanity run of the load path)
#   FAILOVER_TRIALS (20)     leader-failover trials after the tern run (0 skips; needs SINGLE=0)
#   FAILOVER_TIMEOUT (30)    seconds a trial waits for the first PUT after the kill
#   FAILOVER_INTERVAL_MS (5) the failover writer sends one PUT every this many ms
#   CATCHUP_TIMEOUT (60)     bound on a restarted node catching up
#   CATCHUP_SETTLE (1)       seconds waited after a restart when no Raft index metric exists
#   KEYS_PER_S (12000)       presigned URLs (distinct keys) per measured second; more PUTs than
#                            that reuse keys (reported as keys_reused)
#   WRK_TIMEOUT (10)         wrk --timeout seconds (a slower response counts as an error)
#   READY_TIMEOUT (60)       bound on startup, health, readiness and leader waits
#   REGION (bench)           tern --region, also the SigV4 region
#   BENCH_TMP (/var/tmp)     where data dirs go (the disk being measured)
#   BUILD_DIR (build-bench)  SKIP_BUILD (0)  KEEP (0: delete data afterwards)
#   TERND_ARGS ("")  ETCD_ARGS ("")   extra flags for every ternd / etcd
# Every wait is bounded; every wrk run has a hard timeout; every process started is stopped
# on exit.
set -euo pipefail

# shellcheck source=bench/raft_vs_etcd/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
DURATION=${DURATION:-30}
WARMUP=${WARMUP:-5}
CLIENTS=${CLIENTS:-64}
THREADS=${THREADS:-2}
TARGET=${TARGET:-leader}
SYSTEMS=${SYSTEMS:-"etcd tern"}
KEYS_PER_S=${KEYS_PER_S:-12000}
WRK_TIMEOUT=${WRK_TIMEOUT:-10}

# measure SYSTEM LEADER_URL: the measured wrk run, with the leader's /metrics before and
# after it (its log's fsyncs and entries: how much each system batches).
measure() {
  local system=$1 leader_url=$2 ops leader_json
  curl -s --max-time 5 "$leader_url/metrics" >"$WORK/metrics-$system-before" || true
  run_wrk "$system" "$DURATION" "$system" || die "wrk against $system produced no result"
  curl -s --max-time 5 "$leader_url/metrics" >"$WORK/metrics-$system-after" || true
  ops=$(jq '.requests_ok' "$WORK/wrk-$system.json")
  leader_json=$("$PY" "$HELPER" metrics-delta --system "$system" --seconds "$DURATION" --ops "$ops" \
    "$WORK/metrics-$system-before" "$WORK/metrics-$system-after") || leader_json='{}'
  jq -c --argjson m "$leader_json" '. + {leader_metrics: $m}' "$WORK/wrk-$system.json" \
    >"$WORK/wrk-$system.with-metrics.json"
}

# put_row SYSTEM NODES JSON: records one measured PUT run.
put_row() {
  local system=$1 nodes=$2 json=$3
  record "$(echo "$json" | jq -c --arg s "$system" --argjson n "$nodes" --arg t "$TARGET" \
    --argjson v "$VALUE_SIZE" --arg load "$(cat /proc/loadavg)" \
    '. + {kind:"put", system:$s, nodes:$n, target:$t, value_bytes:$v, loadavg_end:$load}')"
  log "$system: $(echo "$json" | jq -r '"\(.ops_per_s | floor) PUT/s, p50 \(.latency_ms_p50) ms, p99 \(.latency_ms_p99) ms, \(.errors.status) bad status, \(.errors.timeout) timeouts"')"
}

bench_etcd() {
  local leader json
  etcd_start
  leader=$(etcd_leader)
  [ -n "$leader" ] || die "no etcd member reports being leader"
  log "etcd leader: member $leader"
  WRK_URL_FILES=()
  if [ "$TARGET" = leader ]; then
    WRK_URLS=("${ETCD_CLIENT_URLS[leader]}")
  else
    WRK_URLS=("${ETCD_CLIENT_URLS[@]:1}")
  fi
  if ((WARMUP > 0)); then
    log "etcd warm-up: ${WARMUP}s"
    run_wrk etcd "$WARMUP" etcd-warm || log "etcd warm-up failed"
  fi
  log "etcd: wrk $CLIENTS connections for ${DURATION}s against ${WRK_URLS[*]}"
  measure etcd "${ETCD_CLIENT_URLS[leader]}"
  json=$(cat "$WORK/wrk-etcd.with-metrics.json")
  [ "$(etcd_leader)" = "$leader" ] || note "etcd leader changed during the run"
  put_row etcd 3 "$json"
  etcd_stop
}

# presign_for LABEL SECONDS: one URL file set per target in WRK_URLS, WRK_URL_FILES set.
presign_for() {
  local label=$1 seconds=$2 k n=${#WRK_URLS[@]} c threads count
  WRK_URL_FILES=()
  for ((k = 0; k < n; k++)); do
    c=$((CLIENTS / n + (k < CLIENTS % n ? 1 : 0)))
    threads=$THREADS
    ((n > 1)) && threads=1
    ((threads > c)) && threads=$c
    count=$(((seconds * KEYS_PER_S * c + CLIENTS - 1) / CLIENTS))
    WRK_URL_FILES[k]="$WORK/urls-$label-$k"
    "$PY" "$HELPER" presign --endpoint "${WRK_URLS[k]}" --region "$REGION" --access-key "$AK" \
      --secret-key "$SK" --bucket "$BUCKET" --prefix "$label/p$k-" --count "$count" \
      --threads "$threads" --expires $((seconds + 86400)) --out "${WRK_URL_FILES[k]}" ||
      die "presign failed"
  done
}

bench_tern() {
  local leader json
  tern_setup
  tern_start
  leader=$(tern_wait_leader 10)
  if [ -z "$leader" ]; then
    leader=1
    note "tern leader not identifiable (no /metrics tern_raft_leader, no /_tern/cluster): node 1 used as the target; followers forward to the leader"
  fi
  log "tern leader: node $leader"
  if [ "$TARGET" = leader ]; then
    WRK_URLS=("${TERN_S3_URLS[leader]}")
  else
    WRK_URLS=("${TERN_S3_URLS[@]:1}")
  fi
  if ((WARMUP > 0)); then
    log "tern warm-up: ${WARMUP}s"
    presign_for tern-warm "$WARMUP"
    run_wrk tern "$WARMUP" tern-warm || log "tern warm-up failed"
  fi
  log "presigning $((DURATION * KEYS_PER_S)) PUT URLs"
  presign_for tern "$DURATION"
  log "tern: wrk $CLIENTS connections for ${DURATION}s against ${WRK_URLS[*]}"
  measure tern "${TERN_S3_URLS[leader]}"
  json=$(cat "$WORK/wrk-tern.with-metrics.json")
  if ((TERN_NODES > 1)); then
    [ "$(tern_leader)" = "$leader" ] || note "tern leader changed during the run (or is not identifiable)"
  fi
  put_row tern "$TERN_NODES" "$json"
  rm -f "$WORK"/urls-*
  if ((FAILOVER_TRIALS > 0)); then
    if ((TERN_NODES == 3)); then
      log "failover: $FAILOVER_TRIALS trials on the same region"
      failover_trials
    else
      note "failover skipped: SINGLE=1"
    fi
  fi
  tern_stop
}

# The whole run is one function, parsed before it starts: editing this file during a run
# cannot change what the running shell executes next.
main() {
  case "$TARGET" in leader | all) ;; *) die "TARGET must be leader or all" ;; esac
  local tool
  for tool in etcd wrk jq curl; do
    command -v "$tool" >/dev/null || die "$tool missing: bash scripts/deps.sh bench"
  done
  local build=0
  [[ " $SYSTEMS " == *" tern "* ]] && build=1
  bench_init raft_vs_etcd "$build"
  record_machine run
  jq -nc --argjson d "$DURATION" --argjson w "$WARMUP" --argjson c "$CLIENTS" \
    --argjson t "$THREADS" --arg target "$TARGET" --arg systems "$SYSTEMS" \
    --argjson k "$KEYS_PER_S" --argjson trials "$FAILOVER_TRIALS" \
    '{kind:"settings", duration_s:$d, warmup_s:$w, clients:$c, threads:$t, target:$target,
      systems:$systems, keys_per_s:$k, failover_trials:$trials}' >>"$RAW"
  local system
  for system in $SYSTEMS; do
    case "$system" in
      etcd) bench_etcd ;;
      tern) bench_tern ;;
      *) die "unknown system $system" ;;
    esac
  done
  "$PY" "$HELPER" summary "$RAW" "$SUMMARY"
}

main "$@"
exit $?
