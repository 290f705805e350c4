#!/usr/bin/env bash
# Leader failover of a 3-node tern region on this machine: FAILOVER_TRIALS times, SIGKILL the
# leader while writers PUT through the other two nodes, time the first PUT sent and
# acknowledged after the kill, restart the node and wait until it has caught up. Prints the
# median, p90 and max; writes JSON under bench/out/. run.sh runs the same trials after its
# throughput phase; this script runs only them, on a fresh region.
#
# Environment (default):
#   FAILOVER_TRIALS (20)     trials
#   FAILOVER_TIMEOUT (30)    seconds a trial waits for the first PUT after the kill
#   FAILOVER_INTERVAL_MS (5) the writers send one PUT every this many ms (round-robin over
#                            the two survivors, each on a fresh connection)
#   CATCHUP_TIMEOUT (60)     bound on a restarted node catching up
#   CATCHUP_SETTLE (1)       seconds waited after a restart when no Raft index metric exists
#   VALUE_SIZE (256)         bytes per PUT
#   READY_TIMEOUT (60)       bound on startup, readiness and leader waits
#   REGION (bench)  BENCH_TMP (/var/tmp)  BUILD_DIR (build-bench)  SKIP_BUILD (0)
#   KEEP (0: delete data afterwards)  TERND_ARGS ("": extra ternd flags, e.g. timeouts)
set -euo pipefail

# shellcheck source=bench/raft_vs_etcd/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

main() {
  [ "$SINGLE" != 1 ] || die "failover needs the 3-node region: unset SINGLE"
  ((FAILOVER_TRIALS > 0)) || die "FAILOVER_TRIALS must be at least 1"
  bench_init raft_vs_etcd-failover 1
  record_machine failover
  jq -nc --argjson trials "$FAILOVER_TRIALS" --argjson interval "$FAILOVER_INTERVAL_MS" \
    '{kind:"settings", failover_trials:$trials, failover_interval_ms:$interval}' >>"$RAW"
  tern_setup
  tern_start
  failover_trials
  tern_stop
  "$PY" "$HELPER" summary "$RAW" "$SUMMARY"
}

main "$@"
exit $?
