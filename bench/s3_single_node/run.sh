#!/usr/bin/env bash
# Single-node S3 benchmark: tern PUT/GET against nginx GET and dd on the same disk, write
# amplification and resident memory; prints a table, writes JSON under bench/out/.
#
# Environment (default):
#   DURATION (10)            seconds per throughput measurement
#   SIZES ("4K 1M")          object sizes
#   CONCURRENCIES ("1 32")   concurrent clients
#   GET_KEYS_MAX (1000)      objects per size for GETs (capped to GET_BYTES_MAX per size)
#   GET_BYTES_MAX (256M)
#   DD_MB (2048)             dd bs=1M count=DD_MB oflag=dsync (long enough to be stable)
#   DD_SMALL_COUNT (2000)    dd bs=4K oflag=dsync (sync latency of small writes)
#   RSS_CLIENTS (32)         clients of the memory phase (0 skips it)
#   RSS_SIZE (1G)            object size of the memory phase (streamed)
#   RSS_TIMEOUT (600)        the memory phase stops (aborting uploads in flight) after this
#   BENCH_TMP (/var/tmp)     where the data dirs go (the disk being measured)
#   BUILD_DIR (build-bench)  SKIP_BUILD (0)  KEEP (0: delete data afterwards)
#   TERND_ARGS ("")          extra ternd flags
#   HOT_CACHE (1G)           --block-cache of the second GET pass, sized to hold the GET
#                            working set (nginx has the page cache); "" skips that pass
# Every wait is bounded; every s3load run has a hard timeout.
# shellcheck disable=SC2317  # cleanup() is a trap handler defined inside main()
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/bench/s3_single_node"
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
DURATION=${DURATION:-10}
SIZES=${SIZES:-"4K 1M"}
CONCURRENCIES=${CONCURRENCIES:-"1 32"}
GET_KEYS_MAX=${GET_KEYS_MAX:-1000}
GET_BYTES_MAX=${GET_BYTES_MAX:-256M}
DD_MB=${DD_MB:-2048}
DD_SMALL_COUNT=${DD_SMALL_COUNT:-2000}
RSS_CLIENTS=${RSS_CLIENTS:-32}
RSS_SIZE=${RSS_SIZE:-1G}
RSS_TIMEOUT=${RSS_TIMEOUT:-600}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
KEEP=${KEEP:-0}
TERND_ARGS=${TERND_ARGS:-}
HOT_CACHE=${HOT_CACHE-1G}
PY=/usr/bin/python3
OUT_DIR="$ROOT/bench/out"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
AK=AKBENCHROOT000000001
SK=bench-secret-key-0123456789
BUCKET=bench

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

bytes_of() { # 4K -> 4096, 1M, 1G, plain numbers
  local v=$1 n=${1%[KkMmGg]}
  case "$v" in
    *[Kk]) echo $((n * 1024)) ;;
    *[Mm]) echo $((n * 1024 * 1024)) ;;
    *[Gg]) echo $((n * 1024 * 1024 * 1024)) ;;
    *) echo "$v" ;;
  esac
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS: polls until the URL answers 200 or the deadline passes.
wait_http() {
  local url=$1 deadline=$((SECONDS + $2)) i
  for ((i = 0; i < 100000; i++)); do
    if curl -sf -o /dev/null --max-time 1 "$url"; then return 0; fi
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
  return 1
}

io_write_bytes() { awk '/^write_bytes:/ {print $2}' "/proc/$1/io"; }
status_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# The whole run is one function, parsed before it starts: editing this file during a run
# cannot change what the running shell executes next.
main() {
# ---------------------------------------------------------------- build
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building ternd and s3load in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTERN_SANITIZERS=OFF >/dev/null
  ninja -C "$BUILD_DIR" -j2 ternd s3load >&2
fi
TERND="$BUILD_DIR/ternd"
S3LOAD="$BUILD_DIR/s3load"
{ [ -x "$TERND" ] && [ -x "$S3LOAD" ]; } || die "missing $TERND or $S3LOAD"

mkdir -p "$OUT_DIR"
WORK=$(mktemp -d "$BENCH_TMP/tern-bench.XXXXXX")
RAW="$OUT_DIR/s3_single_node-$STAMP.jsonl"
SUMMARY="$OUT_DIR/s3_single_node-$STAMP.json"
: >"$RAW"
TERND_PID=""
NGINX_PID=""

cleanup() {
  local rc=$?
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then kill -QUIT "$NGINX_PID" || true; fi
  if [ -n "$TERND_PID" ] && kill -0 "$TERND_PID" 2>/dev/null; then kill -TERM "$TERND_PID" || true; fi
  local i
  for ((i = 0; i < 600; i++)); do
    { [ -n "$TERND_PID" ] && kill -0 "$TERND_PID" 2>/dev/null; } ||
      { [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; } || break
    sleep 0.1
  done
  if [ -n "$TERND_PID" ] && kill -0 "$TERND_PID" 2>/dev/null; then kill -KILL "$TERND_PID" || true; fi
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then kill -KILL "$NGINX_PID" || true; fi
  if [ "$KEEP" != 1 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# record KIND JSON [extra jq assignments]: appends one result line.
record() {
  local kind=$1 json=$2
  shift 2
  if [ -z "$json" ]; then
    log "no result for $kind (s3load failed)"
    return 0
  fi
  echo "$json" | jq -c --arg kind "$kind" ". + {kind: \$kind} $*" >>"$RAW"
}

# load ARGS...: runs s3load with a hard timeout and prints its JSON line.
load() {
  local limit=$((DURATION + 300)) rc=0
  timeout --signal=TERM --kill-after=10 "$limit" "$S3LOAD" "$@" || rc=$?
  # 2: some requests failed (the JSON says how many); 124/137: timed out; >128: a signal.
  [ "$rc" -eq 0 ] || log "s3load exit status $rc"
  return "$rc"
}

# ---------------------------------------------------------------- machine
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
NPROC=$(nproc)
MEM_KIB=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
DISK=$(df -P "$WORK" | awk 'NR == 2 {print $1}')
FS=$(df -PT "$WORK" | awk 'NR == 2 {print $2}')
log "machine: $NPROC x $CPU_MODEL, $((MEM_KIB / 1024)) MiB RAM; disk $DISK ($FS) at $WORK"
jq -nc --arg date "$STAMP" --arg cpu "$CPU_MODEL" --argjson nproc "$NPROC" \
  --argjson mem_kib "$MEM_KIB" --arg disk "$DISK" --arg fs "$FS" --arg dir "$WORK" \
  --arg kernel "$(uname -r)" --arg git "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
  --arg duration "$DURATION" --arg args "$TERND_ARGS" --arg load "$(cat /proc/loadavg)" \
  '{kind:"machine", date:$date, cpu_model:$cpu, nproc:$nproc, mem_kib:$mem_kib, disk:$disk,
    fs:$fs, dir:$dir, kernel:$kernel, git:$git, duration_s:($duration|tonumber), ternd_args:$args,
    loadavg_start:$load}' >>"$RAW"

dd_run() { # dd_run BS COUNT LABEL
  local out line bytes secs
  out=$(dd if=/dev/zero of="$WORK/dd.bin" bs="$1" count="$2" oflag=dsync 2>&1)
  line=$(echo "$out" | tail -1)
  bytes=$(echo "$line" | awk '{print $1}')
  secs=$(echo "$line" | sed -E 's/.*copied, ([0-9.e+-]+) s.*/\1/')
  rm -f "$WORK/dd.bin"
  jq -nc --arg lbl "$3" --arg bs "$1" --argjson count "$2" --argjson bytes "$bytes" \
    --argjson secs "$secs" '{"kind":"dd", "label":$lbl, "bs":$bs, "count":$count, "bytes":$bytes,
      "seconds":$secs, "mb_per_s":($bytes / 1e6 / $secs), "latency_ms_avg":($secs * 1000 / $count)}' >>"$RAW"
}
# The disk's synced bandwidth drifts (seen here: 442 to 1437 MB/s between runs), so dd runs
# before the tern phases and again after them; PUT ratios use the faster of the two.
log "dd bs=1M count=$DD_MB oflag=dsync (before the tern phases)"
dd_run 1M "$DD_MB" "dd 1M dsync before"

# ---------------------------------------------------------------- ternd
ternd_start() { # ternd_start DATA_DIR [extra flags...]: sets TERND_PID, TERN_URL
  local dir=$1
  shift
  TERN_PORT=$(free_port)
  TERN_URL="http://127.0.0.1:$TERN_PORT"
  log "starting ternd (sync on) on $TERN_URL, data in $dir, flags: $TERND_ARGS $*"
  # shellcheck disable=SC2086
  TERN_ROOT_ACCESS_KEY=$AK TERN_ROOT_SECRET_KEY=$SK "$TERND" --data-dir "$dir" \
    --s3-listen "127.0.0.1:$TERN_PORT" $TERND_ARGS "$@" >>"$WORK/ternd.log" 2>&1 &
  TERND_PID=$!
  wait_http "$TERN_URL/readyz" 60 || { tail -20 "$WORK/ternd.log" >&2; die "ternd not ready"; }
}
ternd_stop() { # ternd_stop LABEL: SIGTERM, bounded wait, records the exit code
  local rc=0
  log "stopping ternd ($1, SIGTERM)"
  kill -TERM "$TERND_PID"
  for ((i = 0; i < 600; i++)); do kill -0 "$TERND_PID" 2>/dev/null || break; sleep 0.1; done
  wait "$TERND_PID" || rc=$?
  TERND_PID=""
  jq -nc --argjson rc "$rc" --arg lbl "$1" --arg load "$(cat /proc/loadavg)" \
    '{"kind":"ternd_exit", "label":$lbl, "exit_code":$rc, "loadavg_end":$load}' >>"$RAW"
}
ternd_start "$WORK/tern-data"
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK
load --mode mb --url "$TERN_URL" --bucket "$BUCKET" >/dev/null || die "create bucket failed"

# ---------------------------------------------------------------- tern PUT
IO_START=$(io_write_bytes "$TERND_PID")
PUT_USER_BYTES=0
for size in $SIZES; do
  for c in $CONCURRENCIES; do
    log "tern PUT size=$size concurrency=$c for ${DURATION}s"
    before=$(io_write_bytes "$TERND_PID")
    json=$(load --mode put --url "$TERN_URL" --bucket "$BUCKET" --size "$size" \
      --concurrency "$c" --duration "$DURATION" --prefix "put-$size-c$c-" \
      --label "tern put $size c$c") || log "s3load reported errors"
    after=$(io_write_bytes "$TERND_PID")
    record tern_put "$json" "+ {system:\"tern\", disk_write_bytes:($after - $before)}
      | . + {write_amplification:(if .ops > 0 then .disk_write_bytes / (.ops * .size_bytes) else null end)}"
    user=$(echo "$json" | jq '.ops * .size_bytes' 2>/dev/null || true)
    PUT_USER_BYTES=$((PUT_USER_BYTES + ${user:-0}))
  done
done
# Let background flushes and compactions caused by the PUTs finish (bounded), then total.
log "waiting for ternd's writes to settle (at most 60 s)"
prev=-1
for ((i = 0; i < 60; i++)); do
  cur=$(io_write_bytes "$TERND_PID")
  [ "$cur" = "$prev" ] && break
  prev=$cur
  sleep 1
done
IO_END=$(io_write_bytes "$TERND_PID")
jq -nc --argjson user "$PUT_USER_BYTES" --argjson disk "$((IO_END - IO_START))" \
  '{kind:"tern_put_total", user_bytes:$user, disk_write_bytes:$disk,
    write_amplification:(if $user > 0 then $disk / $user else null end)}' >>"$RAW"

# ---------------------------------------------------------------- populate for GETs
NGINX_ROOT="$WORK/nginx-root"
mkdir -p "$NGINX_ROOT/$BUCKET"
chmod 755 "$WORK" "$NGINX_ROOT" "$NGINX_ROOT/$BUCKET"
declare -A KEYS
for size in $SIZES; do
  bytes=$(bytes_of "$size")
  keys=$(($(bytes_of "$GET_BYTES_MAX") / bytes))
  ((keys > GET_KEYS_MAX)) && keys=$GET_KEYS_MAX
  ((keys < 1)) && keys=1
  KEYS[$size]=$keys
  log "populating $keys objects of $size in tern and for nginx"
  load --mode put --url "$TERN_URL" --bucket "$BUCKET" --size "$size" --concurrency 8 \
    --count "$keys" --prefix "get-$size-" --label "populate $size" >/dev/null ||
    die "populate failed"
  # Same names and sizes for nginx (content differs: it does not matter to sendfile).
  "$PY" - "$NGINX_ROOT/$BUCKET" "get-$size-" "$bytes" "$keys" <<'EOF'
import os, sys
d, prefix, size, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
block = os.urandom(min(size, 1 << 20))
for i in range(n):
    with open(os.path.join(d, f"{prefix}{i:08d}"), "wb") as f:
        left = size
        while left > 0:
            f.write(block[:min(left, len(block))])
            left -= len(block)
EOF
done

# ---------------------------------------------------------------- tern GET
for size in $SIZES; do
  for c in $CONCURRENCIES; do
    log "tern GET size=$size concurrency=$c for ${DURATION}s"
    json=$(load --mode get --url "$TERN_URL" --bucket "$BUCKET" --size "$size" \
      --concurrency "$c" --duration "$DURATION" --prefix "get-$size-" --keys "${KEYS[$size]}" \
      --label "tern get $size c$c") || log "s3load reported errors"
    record tern_get "$json" '+ {system:"tern"}'
  done
done

# ---------------------------------------------------------------- tern GET, cache = working set
# The same objects with the block cache sized to hold them: the comparison nginx gets from
# the page cache. Misses pay RocksDB's blob checksum, software CRC32c in Debian's build.
if [ -n "$HOT_CACHE" ]; then
  ternd_stop "default cache"
  ternd_start "$WORK/tern-data" --block-cache "$HOT_CACHE"
  for size in $SIZES; do
    for c in $CONCURRENCIES; do
      log "tern GET (block cache $HOT_CACHE) size=$size concurrency=$c for ${DURATION}s"
      load --mode get --url "$TERN_URL" --bucket "$BUCKET" --size "$size" --concurrency 8 \
        --duration 3 --prefix "get-$size-" --keys "${KEYS[$size]}" --label warm >/dev/null || true
      json=$(load --mode get --url "$TERN_URL" --bucket "$BUCKET" --size "$size" \
        --concurrency "$c" --duration "$DURATION" --prefix "get-$size-" --keys "${KEYS[$size]}" \
        --label "tern get $size c$c cache $HOT_CACHE") || log "s3load reported errors"
      record tern_get_hot "$json" "+ {system:\"tern\", block_cache:\"$HOT_CACHE\"}"
    done
  done
fi

# ---------------------------------------------------------------- nginx GET
NGINX_PORT=$(free_port)
NGINX_PREFIX="$WORK/nginx"
mkdir -p "$NGINX_PREFIX"
sed -e "s|@PORT@|$NGINX_PORT|g" -e "s|@ROOT@|$NGINX_ROOT|g" -e "s|@PREFIX@|$NGINX_PREFIX|g" \
  "$HERE/nginx.conf.template" >"$NGINX_PREFIX/nginx.conf"
log "starting nginx on 127.0.0.1:$NGINX_PORT"
nginx -p "$NGINX_PREFIX" -c "$NGINX_PREFIX/nginx.conf" -e "$NGINX_PREFIX/error.log" &
NGINX_PID=$!
first_size=${SIZES%% *}
wait_http "http://127.0.0.1:$NGINX_PORT/$BUCKET/get-$first_size-00000000" 30 ||
  { cat "$NGINX_PREFIX/error.log" >&2 || true; die "nginx not serving"; }
for size in $SIZES; do
  for c in $CONCURRENCIES; do
    log "nginx GET size=$size concurrency=$c for ${DURATION}s"
    json=$(load --mode get --no-sign --url "http://127.0.0.1:$NGINX_PORT" --bucket "$BUCKET" \
      --size "$size" --concurrency "$c" --duration "$DURATION" --prefix "get-$size-" \
      --keys "${KEYS[$size]}" --label "nginx get $size c$c") || log "s3load reported errors"
    record nginx_get "$json" '+ {system:"nginx"}'
  done
done
kill -QUIT "$NGINX_PID"
for ((i = 0; i < 300; i++)); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
wait "$NGINX_PID" 2>/dev/null || true
NGINX_PID=""

# ---------------------------------------------------------------- dd
log "dd bs=1M count=$DD_MB oflag=dsync"
dd_run 1M "$DD_MB" "dd 1M dsync after"
log "dd bs=4K count=$DD_SMALL_COUNT oflag=dsync"
dd_run 4K "$DD_SMALL_COUNT" "dd 4K dsync"

# ---------------------------------------------------------------- memory
if [ "$RSS_CLIENTS" -gt 0 ]; then
  rss_bytes=$(bytes_of "$RSS_SIZE")
  need=$((RSS_CLIENTS * rss_bytes * 3 / 2))
  avail=$(($(df -Pk "$WORK" | awk 'NR == 2 {print $4}') * 1024))
  if ((avail < need + (5 << 30))); then
    log "skipping memory phase: needs $((need >> 30)) GiB + 5 GiB free, have $((avail >> 30)) GiB"
    jq -nc '{kind:"memory", skipped:"not enough free disk"}' >>"$RAW"
  else
    # A fresh node with the default flags: what uploads cost, not what earlier reads cached.
    ternd_stop "before memory phase"
    ternd_start "$WORK/tern-data-rss"
    load --mode mb --url "$TERN_URL" --bucket "$BUCKET" >/dev/null || die "create bucket failed"
    log "memory: $RSS_CLIENTS clients each PUT one $RSS_SIZE object (streamed), fresh node"
    rss_base=$(status_kib "$TERND_PID" VmRSS)
    : >"$WORK/rss.samples"
    (
      for ((i = 0; i < 36000; i++)); do # 0.1 s samples, at most an hour
        [ -e "$WORK/rss.stop" ] && break
        kill -0 "$TERND_PID" 2>/dev/null || break
        echo "$(status_kib "$TERND_PID" VmRSS) $(status_kib "$TERND_PID" VmHWM)" >>"$WORK/rss.samples"
        sleep 0.1
      done
    ) &
    SAMPLER_PID=$!
    json=$(DURATION=$RSS_TIMEOUT load --mode put --url "$TERN_URL" --bucket "$BUCKET" \
      --size "$RSS_SIZE" --concurrency "$RSS_CLIENTS" --count "$RSS_CLIENTS" --prefix "rss-" \
      --timeout $((RSS_TIMEOUT + 60)) --deadline "$RSS_TIMEOUT" \
      --label "memory $RSS_CLIENTS x $RSS_SIZE") || log "s3load reported errors or aborted uploads"
    touch "$WORK/rss.stop"
    wait "$SAMPLER_PID" || true
    rss_max=$(awk 'BEGIN {m = 0} $1 > m {m = $1} END {print m}' "$WORK/rss.samples")
    hwm=$(status_kib "$TERND_PID" VmHWM)
    samples=$(wc -l <"$WORK/rss.samples")
    record memory "$json" "+ {rss_kib_before:$rss_base, rss_kib_max:$rss_max, vm_hwm_kib:$hwm,
      samples:$samples}"
  fi
fi

# ---------------------------------------------------------------- stop ternd
ternd_stop "end"

# ---------------------------------------------------------------- summary
"$PY" - "$RAW" "$SUMMARY" <<'EOF'
import json, sys
raw, summary_path = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in open(raw) if l.strip()]
machine = next(r for r in rows if r["kind"] == "machine")
def find(kind, size, c):
    for r in rows:
        if r["kind"] == kind and r["size_bytes"] == size and r["concurrency"] == c:
            return r
dd1ms = [r for r in rows if r["kind"] == "dd" and r["bs"] == "1M"]
dd1m = max(dd1ms, key=lambda r: r["mb_per_s"]) if dd1ms else None  # the conservative baseline
dd4k = next((r for r in rows if r["kind"] == "dd" and r["bs"] == "4K"), None)
def human(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"
lines = []
hdr = f"{'op':<6}{'size':>8}{'conc':>6}{'ops/s':>11}{'MB/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}  {'vs':<18}{'ratio':>7}  {'WA':>6}"
lines.append(hdr)
lines.append("-" * len(hdr))
results = []
combos = sorted({(r["size_bytes"], r["concurrency"]) for r in rows if r["kind"] in ("tern_put", "tern_get")})
for kind, op in (("tern_put", "PUT"), ("tern_get", "GET"), ("tern_get_hot", "GET*")):
    for size, c in combos:
        r = find(kind, size, c)
        if not r:
            continue
        vs, ratio = "", None
        if kind in ("tern_get", "tern_get_hot"):
            n = find("nginx_get", size, c)
            if n and n["mb_per_s"] > 0:
                vs, ratio = f"nginx {n['mb_per_s']:.1f} MB/s", r["mb_per_s"] / n["mb_per_s"]
        elif dd1m and dd1m["mb_per_s"] > 0:
            vs, ratio = f"dd {dd1m['mb_per_s']:.1f} MB/s", r["mb_per_s"] / dd1m["mb_per_s"]
        wa = r.get("write_amplification")
        lines.append(f"{op:<6}{human(size):>8}{c:>6}{r['ops_per_s']:>11.1f}{r['mb_per_s']:>10.2f}"
                     f"{r['latency_ms_p50']:>10.3f}{r['latency_ms_p99']:>10.3f}{r['errors']:>8}  "
                     f"{vs:<18}{(f'{ratio:.3f}' if ratio is not None else ''):>7}  "
                     f"{(f'{wa:.2f}' if wa is not None else ''):>6}")
        results.append({"op": op, "block_cache": r.get("block_cache", "default"), "size_bytes": size, "concurrency": c, "ops_per_s": r["ops_per_s"],
                        "mb_per_s": r["mb_per_s"], "latency_ms_p50": r["latency_ms_p50"],
                        "latency_ms_p99": r["latency_ms_p99"], "errors": r["errors"],
                        "baseline": vs, "ratio_to_baseline": ratio, "write_amplification": wa})
for size, c in combos:
    n = find("nginx_get", size, c)
    if n:
        lines.append(f"{'nginx':<6}{human(size):>8}{c:>6}{n['ops_per_s']:>11.1f}{n['mb_per_s']:>10.2f}"
                     f"{n['latency_ms_p50']:>10.3f}{n['latency_ms_p99']:>10.3f}{n['errors']:>8}")
total = next((r for r in rows if r["kind"] == "tern_put_total"), None)
mem = next((r for r in rows if r["kind"] == "memory"), None)
exits = [r for r in rows if r["kind"] == "ternd_exit"]
ex = exits[-1] if exits else None
hot = next((r for r in rows if r["kind"] == "tern_get_hot"), None)
lines.append("")
if hot:
    lines.append(f"GET* = the same GETs with --block-cache {hot['block_cache']} (cache holds the working set)")
for d in dd1ms:
    lines.append(f"{d['label']} (bs=1M oflag=dsync): {d['mb_per_s']:.1f} MB/s ({d['bytes']} bytes in {d['seconds']:.3f} s)")
if dd1m:
    lines.append(f"PUT ratios use the faster dd: {dd1m['mb_per_s']:.1f} MB/s")
if dd4k:
    lines.append(f"dd bs=4K oflag=dsync: {dd4k['mb_per_s']:.2f} MB/s, {dd4k['latency_ms_avg']:.3f} ms per synced write")
if total:
    wa = total["write_amplification"]
    lines.append(f"write amplification over all PUT phases (after settling): "
                 f"{(f'{wa:.2f}' if wa is not None else 'n/a')} "
                 f"({total['disk_write_bytes']} disk bytes / {total['user_bytes']} user bytes)")
if mem and not mem.get("skipped"):
    lines.append(f"memory: {mem['concurrency']} clients x {human(mem['size_bytes'])} PUT: "
                 f"{mem['ops']} ok, {mem['errors']} errors, {mem.get('aborted', 0)} aborted at the "
                 f"deadline, {mem['mb_per_s']:.1f} MB/s, {mem['seconds']:.0f} s; ternd VmRSS "
                 f"before {mem['rss_kib_before'] / 1024:.1f} MiB, max {mem['rss_kib_max'] / 1024:.1f} MiB, "
                 f"VmHWM {mem['vm_hwm_kib'] / 1024:.1f} MiB ({mem['samples']} samples)")
elif mem:
    lines.append(f"memory phase skipped: {mem['skipped']}")
if ex:
    lines.append("ternd exit codes on SIGTERM: " +
                 ", ".join(f"{e.get('label', '')}: {e['exit_code']}" for e in exits))
    lines.append(f"load average at start: {machine.get('loadavg_start')}; at end: {ex.get('loadavg_end')}")
lines.append(f"machine: {machine['nproc']} x {machine['cpu_model']}, disk {machine['disk']} ({machine['fs']}), "
             f"date {machine['date']}, git {machine['git']}")
print("\n".join(lines))
json.dump({"machine": machine, "results": results, "put_total": total, "memory": mem,
           "dd": [r for r in rows if r["kind"] == "dd"], "ternd_exit": exits,
           "raw": rows}, open(summary_path, "w"), indent=2)
print(f"\nraw results: {raw}\nsummary: {summary_path}")
EOF
}

main "$@"
exit $?
