#!/usr/bin/env bash
# Runs three tern regions on loopback until Ctrl-C: us-east, eu-west and ap-southeast, each a
# region group of NODES nodes (1 by default), linked by geo-replication through a topology
# modelled on those regions' list prices. Data and logs under DIR.
#
# Usage: scripts/run-regions.sh [BUILD_DIR] [DIR]   (defaults: build, ./data-regions)
# S3 of region k (1..3), node i: 127.0.0.1:9k0i (9101, 9201, 9301 with one node each).
# Root credentials (shared by the regions) come from TERN_ROOT_ACCESS_KEY /
# TERN_ROOT_SECRET_KEY or default to a fixed local pair, printed at start.
set -euo pipefail

BUILD=${1:-build}
DIR=${2:-./data-regions}
NODES=${NODES:-1}
AK=${TERN_ROOT_ACCESS_KEY:-ternlocal}
SK=${TERN_ROOT_SECRET_KEY:-ternlocalsecret}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REGIONS=(us-east eu-west ap-southeast)

ids=$(seq 1 "$NODES")
mkdir -p "$DIR"
if [ "$NODES" -gt 1 ] && [ ! -f "$DIR/ca/ca.crt" ]; then
  # shellcheck disable=SC2086
  sh "$ROOT/scripts/gen-test-ca.sh" "$DIR/ca" $ids >/dev/null
fi

s3_port() { echo $((9000 + 100 * $1 + $2)); }
peer_port() { echo $((7000 + 100 * $1 + $2)); }

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

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping ${#pids[@]} nodes"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop INT TERM EXIT

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
  done
done

echo "three tern regions, $NODES node(s) each (topology and logs under $DIR):"
for k in 1 2 3; do
  echo "  ${REGIONS[$((k - 1))]}: S3 http://127.0.0.1:$(s3_port "$k" 1)"
done
echo "  access key $AK, secret key $SK (the same in every region)"
echo "  ternctl --endpoint http://127.0.0.1:9101 --access-key $AK --secret-key $SK egress"
echo "Ctrl-C stops every node."
wait -n "${pids[@]}" || true
echo "a node exited; see its log"
