#!/bin/sh
# Makes a throwaway cluster CA and one certificate per node id for the peer transport (tests, make run).
#
# Usage: scripts/gen-test-ca.sh DIR ID...
# Writes DIR/ca.crt, DIR/ca.key and DIR/node-ID.crt, DIR/node-ID.key for each ID. The transport's
# identity rule: a node certificate's subject CN is the node id in decimal (see node/transport.h).
# Keys are EC P-256, unencrypted: this is for tests and local clusters, not production.
set -eu

if [ $# -lt 2 ]; then
    echo "usage: $0 DIR ID..." >&2
    exit 2
fi
dir=$1
shift
# Validate every id before writing anything, so a typo never replaces an existing CA.
for id in "$@"; do
    case $id in
    '' | *[!0-9]* | 0*)
        echo "$0: node id must be a positive decimal without leading zeros: $id" >&2
        exit 2
        ;;
    esac
done
mkdir -p "$dir"
umask 077

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -days 30 -subj "/CN=tern test cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null

for id in "$@"; do
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -subj "/CN=$id" -keyout "$dir/node-$id.key" -out "$dir/node-$id.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
        >"$dir/node-$id.ext"
    openssl x509 -req -in "$dir/node-$id.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 30 -sha256 -extfile "$dir/node-$id.ext" \
        -out "$dir/node-$id.crt" 2>/dev/null
    rm -f "$dir/node-$id.csr" "$dir/node-$id.ext"
done
rm -f "$dir/ca.srl"
