#!/usr/bin/env bash
# Installs the Debian packages tern needs to build, test and benchmark; only missing ones.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  librocksdb-dev libuv1-dev libprotobuf-c-dev protobuf-c-compiler
  libssl-dev openssl libcurl4-openssl-dev libnghttp2-dev node-llhttp
  libjansson-dev libcmocka-dev
  python3 python3-boto3 python3-pytest python3-requests s3cmd awscli
  prometheus nginx curl procps jq
)

# `deps.sh fuzz` adds what the libFuzzer drivers need.
if [ "${1:-}" = "fuzz" ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi
# `deps.sh bench` adds what the benchmarks need: etcd 3.4 (server and etcdctl) as the
# Raft baseline of bench/raft_vs_etcd and wrk, its load generator.
if [ "${1:-}" = "bench" ]; then
  PACKAGES+=(etcd-server etcd-client wrk)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
