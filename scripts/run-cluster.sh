#!/usr/bin/env bash
# Runs a local 3-node tern region on loopback until Ctrl-C: a throwaway CA, mutual TLS between
# the nodes, S3 on 127.0.0.1:9001..9003, peers on 127.0.0.1:7001..7003, data under DIR.
#
# Usage: scripts/run-cluster.sh [BUILD_DIR] [DIR]   (defaults: build, ./data-cluster)
# NODES (3) sets the node count. Root credentials come from TERN_ROOT_ACCESS_KEY /
# TERN_ROOT_SECRET_KEY or default to a fixed local pair, printed at start.
set -euo pipefail

BUILD=${1:-build}
DIR=${2:-./data-cluster}
NODES=${NODES:-3}
AK=${TERN_ROOT_ACCESS_KEY:-ternlocal}
SK=${TERN_ROOT_SECRET_KEY:-ternlocalsecret}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ids=$(seq 1 "$NODES")
mkdir -p "$DIR"
if [ ! -f "$DIR/ca/ca.crt" ]; then
  # shellcheck disable=SC2086
  sh "$ROOT/scripts/gen-test-ca.sh" "$DIR/ca" $ids >/dev/null
fi
peers=""
for i in $ids; do
  peers="${peers:+$peers,}$i=127.0.0.1:$((7000 + i))"
done

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping ${#pids[@]} nodes"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

for i in $ids; do
  "$BUILD/ternd" --region local --node-id "$i" --data-dir "$DIR/node$i" \
    --s3-listen "127.0.0.1:$((9000 + i))" --peer-listen "127.0.0.1:$((7000 + i))" \
    --peers "$peers" --peer-ca "$DIR/ca/ca.crt" --peer-cert "$DIR/ca/node-$i.crt" \
    --peer-key "$DIR/ca/node-$i.key" --root-access-key "$AK" --root-secret-key "$SK" \
    >"$DIR/node$i.log" 2>&1 &
  pids+=("$!")
done

echo "tern region 'local' with $NODES nodes (logs in $DIR/node*.log)"
for i in $ids; do echo "  node $i: S3 http://127.0.0.1:$((9000 + i))"; done
echo "  access key $AK, secret key $SK"
echo "  ternctl --endpoint http://127.0.0.1:9001 --access-key $AK --secret-key $SK cluster status"
echo "Ctrl-C stops every node."
wait -n "${pids[@]}" || true
echo "a node exited; see its log"
