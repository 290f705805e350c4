#!/usr/bin/env bash
# Placement benchmark: policy costs vs the oracle and full replication on synthetic traces; engine speed and memory.
#
# Environment (default):
#   BUILD_DIR (build)        where ternctl and placement_bench are (relative to the repo root,
#                            or absolute); build them with
#                            cmake --build BUILD_DIR --target ternctl placement_bench
#   OUT_DIR (bench/out/placement-<UTC stamp>)   traces, JSON, plots, summary (bench/out/ is
#                            git-ignored); must not exist yet or be empty
#   TOPOLOGY (bench/placement/topology.json)
#   SCENARIOS ("stable-skew follow-the-sun flash-crowd drift write-heavy")
#   SEEDS ("1 2 3")          one run per scenario and seed (trace generator and engine seed)
#   QUICK (0)                1: small traces and one engine run, for a smoke test
#   OBJECTS, EVENTS          per trace (50000 and 2000000; QUICK: 2000 and 50000)
#   BENCH_OBJECTS, BENCH_EVENTS, BENCH_REPEAT   placement_bench (200000, 4000000, median of 3;
#                            QUICK: one run)
#   SPEED (1)                0 skips placement_bench
#   JOBS (nproc)             scenario runs in parallel (placement_bench runs alone afterwards)
#   KEEP_TRACES (0)          1 keeps the trace CSVs (they are regenerated exactly from the seed)
#   STRICT (0)               1: exit 3 if a target is missed
# Prints the commands it ran (also in OUT_DIR/commands.txt), one table per run, and the targets.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
abs() { case "$1" in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }

QUICK=${QUICK:-0}
# QUICK keeps the engine run's size: bytes per pair depend on how many pairs each object has,
# and a small run mostly measures the engine's fixed tables.
if [ "$QUICK" = 1 ]; then
  OBJECTS=${OBJECTS:-2000} EVENTS=${EVENTS:-50000} BENCH_REPEAT=${BENCH_REPEAT:-1}
else
  OBJECTS=${OBJECTS:-50000} EVENTS=${EVENTS:-2000000} BENCH_REPEAT=${BENCH_REPEAT:-3}
fi
BENCH_OBJECTS=${BENCH_OBJECTS:-200000} BENCH_EVENTS=${BENCH_EVENTS:-4000000}
BUILD_DIR=$(abs "${BUILD_DIR:-build}")
TOPOLOGY=$(abs "${TOPOLOGY:-bench/placement/topology.json}")
SCENARIOS=${SCENARIOS:-"stable-skew follow-the-sun flash-crowd drift write-heavy"}
SEEDS=${SEEDS:-"1 2 3"}
SPEED=${SPEED:-1}
JOBS=${JOBS:-$(nproc)}
KEEP_TRACES=${KEEP_TRACES:-0}
STRICT=${STRICT:-0}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT_DIR=$(abs "${OUT_DIR:-bench/out/placement-$STAMP}")
TERNCTL="$BUILD_DIR/ternctl"
BENCH="$BUILD_DIR/placement_bench"
PY=/usr/bin/python3

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$TERNCTL" ] || die "$TERNCTL not found: cmake --build $BUILD_DIR --target ternctl placement_bench"
[ "$SPEED" = 0 ] || [ -x "$BENCH" ] || die "$BENCH not found (or set SPEED=0)"
[ -r "$TOPOLOGY" ] || die "topology $TOPOLOGY not readable"
[ -x "$PY" ] || die "$PY is needed for the summary"
if [ -d "$OUT_DIR" ] && [ -n "$(ls -A "$OUT_DIR")" ]; then die "$OUT_DIR is not empty"; fi
mkdir -p "$OUT_DIR"

# The trace's regions are the topology's, in its order: sim gen skews homes toward the first.
REGIONS=$("$PY" -c 'import json,sys; print(",".join(r["name"] for r in json.load(open(sys.argv[1]))["regions"]))' "$TOPOLOGY")

COMMANDS="$OUT_DIR/commands.txt"
{
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n): $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "# git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- placement ops 2>/dev/null || echo ' (placement/ or ops/ modified)')"
  echo "# build: cmake -S $ROOT -B $BUILD_DIR -G Ninja -DTERN_SANITIZERS=OFF && cmake --build $BUILD_DIR --target ternctl placement_bench"
  echo "QUICK=$QUICK OBJECTS=$OBJECTS EVENTS=$EVENTS SEEDS=\"$SEEDS\" BENCH_OBJECTS=$BENCH_OBJECTS BENCH_EVENTS=$BENCH_EVENTS BENCH_REPEAT=$BENCH_REPEAT BUILD_DIR=$BUILD_DIR bench/placement/run.sh"
} >"$COMMANDS"

# One scenario and seed: generate the trace, replay it through every policy.
run_case() {
  local sc=$1 seed=$2 base="$OUT_DIR/$1-seed$2"
  "$TERNCTL" sim gen --seed "$seed" --regions "$REGIONS" --scenario "$sc" \
    --objects "$OBJECTS" --events "$EVENTS" --out "$base.csv" 2>"$base.err" || return 1
  "$TERNCTL" -o json sim --topology "$TOPOLOGY" --trace "$base.csv" --seed "$seed" \
    --compare --plot "$base.svg" >"$base.json" 2>>"$base.err" || return 1
  [ "$KEEP_TRACES" = 1 ] || rm -f "$base.csv"
  [ -s "$base.err" ] || rm -f "$base.err"
}

CASES=()
for seed in $SEEDS; do
  for sc in $SCENARIOS; do
    CASES+=("$sc $seed")
    base="$OUT_DIR/$sc-seed$seed"
    {
      echo "$TERNCTL sim gen --seed $seed --regions $REGIONS --scenario $sc --objects $OBJECTS --events $EVENTS --out $base.csv"
      echo "$TERNCTL -o json sim --topology $TOPOLOGY --trace $base.csv --seed $seed --compare --plot $base.svg > $base.json"
    } >>"$COMMANDS"
  done
done
[ "${#CASES[@]}" -gt 0 ] || die "no scenarios or seeds"

log "${#CASES[@]} runs ($OBJECTS objects, $EVENTS events each), $JOBS at a time, into $OUT_DIR"
failed=0 running=0
for c in "${CASES[@]}"; do
  read -r sc seed <<<"$c"
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
  log "start $sc seed $seed"
  run_case "$sc" "$seed" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
for c in "${CASES[@]}"; do
  read -r sc seed <<<"$c"
  if [ -f "$OUT_DIR/$sc-seed$seed.err" ]; then
    log "$sc seed $seed: $(cat "$OUT_DIR/$sc-seed$seed.err")"
  fi
  [ -s "$OUT_DIR/$sc-seed$seed.json" ] || failed=1
done
[ "$failed" = 0 ] || die "a run failed (see the .err files in $OUT_DIR)"

SPEED_JSON=""
if [ "$SPEED" != 0 ]; then
  # Alone, after the replays, so it has a core to itself.
  SPEED_JSON="$OUT_DIR/placement_bench.json"
  echo "$BENCH --objects $BENCH_OBJECTS --events $BENCH_EVENTS --seed 1 --regions 6 --repeat $BENCH_REPEAT --json > $SPEED_JSON" >>"$COMMANDS"
  log "placement_bench: $BENCH_OBJECTS objects, $BENCH_EVENTS events"
  "$BENCH" --objects "$BENCH_OBJECTS" --events "$BENCH_EVENTS" --seed 1 --regions 6 --repeat "$BENCH_REPEAT" --json \
    >"$SPEED_JSON" || die "placement_bench failed"
fi

echo "== commands"
cat "$COMMANDS"
echo

# The summary: full-precision costs, ratios and every target's PASS/MISS.
set +e
"$PY" - "$OUT_DIR" "$SPEED_JSON" "${CASES[@]}" <<'PYEOF' | tee "$OUT_DIR/summary.txt"
import json, math, sys

out_dir, speed_path, cases = sys.argv[1], sys.argv[2], [c.split() for c in sys.argv[3:]]
BASELINES = ["full", "home", "static-k", "lru-cache", "counting", "epsilon"]
TARGET_GEO_ORACLE, TARGET_MAX_ORACLE, TARGET_GEO_FULL = 1.15, 1.35, 0.5
TARGET_EVENTS_PER_S, TARGET_BYTES_PER_PAIR = 2e6, 64.0

def ratio(a, b):
    return a / b if b > 0 else float("nan")

def geomean(xs):
    xs = [x for x in xs if x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")

def verdict(ok):
    return "PASS" if ok else "MISS"

runs, summary = [], {"runs": [], "targets": {}}
for sc, seed in cases:
    with open(f"{out_dir}/{sc}-seed{seed}.json") as f:
        rows = {r["policy"]: r for r in json.load(f)}
    runs.append((sc, seed, rows))
    oracle, full = rows["oracle"]["total_usd"], rows["full"]["total_usd"]
    print(f"== {sc}, seed {seed} ({rows['oracle']['events']} events)")
    print(f"{'policy':<10} {'total_usd':>16} {'x_oracle':>9} {'x_full':>9} {'local':>6} {'violations':>10}")
    for name, r in rows.items():
        print(f"{name:<10} {r['total_usd']:>16.9g} {ratio(r['total_usd'], oracle):>9.4f} "
              f"{ratio(r['total_usd'], full):>9.4f} {r['local_read_ratio']:>6.3f} "
              f"{r['constraint_violations']:>10d}")
    summary["runs"].append({"scenario": sc, "seed": int(seed), "policies": list(rows.values())})
    print()

# Every policy's ratios over all runs, for context.
policies = list(runs[0][2].keys())
print("== geometric mean over runs")
print(f"{'policy':<10} {'x_oracle':>9} {'x_full':>9} {'worst x_oracle':>15}")
for p in policies:
    xo = [ratio(rows[p]["total_usd"], rows["oracle"]["total_usd"]) for _, _, rows in runs]
    xf = [ratio(rows[p]["total_usd"], rows["full"]["total_usd"]) for _, _, rows in runs]
    print(f"{p:<10} {geomean(xo):>9.4f} {geomean(xf):>9.4f} {max(xo):>15.4f}")
print()

# Bandit per run: its ratio to the oracle and to full, and every baseline that was as cheap.
bandit_oracle, bandit_full, beaten_by, closest, violations = [], [], [], [], 0
for sc, seed, rows in runs:
    b = rows["bandit"]["total_usd"]
    bandit_oracle.append((ratio(b, rows["oracle"]["total_usd"]), sc, seed))
    bandit_full.append(ratio(b, rows["full"]["total_usd"]))
    for p in BASELINES:
        if p in rows and rows[p]["total_usd"] <= b:
            beaten_by.append(f"{sc}/seed{seed}: {p} {rows[p]['total_usd']:.9g} <= bandit {b:.9g}")
        if p in rows:
            closest.append((ratio(rows[p]["total_usd"], b), p, sc, seed))
    violations += rows["bandit"]["constraint_violations"]
others_violating = sorted({f"{p} ({sc}/seed{seed})" for sc, seed, rows in runs
                           for p, r in rows.items() if p != "bandit" and r["constraint_violations"]})

geo_oracle = geomean([x for x, _, _ in bandit_oracle])
worst = max(bandit_oracle)
geo_full = geomean(bandit_full)
t = summary["targets"]
t["bandit_over_oracle_geomean"] = {"value": geo_oracle, "max": TARGET_GEO_ORACLE, "pass": geo_oracle <= TARGET_GEO_ORACLE}
t["bandit_over_oracle_worst"] = {"value": worst[0], "run": f"{worst[1]}/seed{worst[2]}", "max": TARGET_MAX_ORACLE, "pass": worst[0] <= TARGET_MAX_ORACLE}
t["bandit_over_full_geomean"] = {"value": geo_full, "max": TARGET_GEO_FULL, "pass": geo_full <= TARGET_GEO_FULL}
t["bandit_cheapest_baseline_every_run"] = {"exceptions": beaten_by, "baselines": BASELINES, "pass": not beaten_by}
t["bandit_constraint_violations"] = {"value": violations, "pass": violations == 0}

n = len(runs)
print(f"== targets over {n} run{'s' if n != 1 else ''} ({len({c[0] for c in cases})} scenarios x {len({c[1] for c in cases})} seeds)")
print(f"bandit/oracle, geometric mean   {geo_oracle:9.4f}   <= {TARGET_GEO_ORACLE}   {verdict(geo_oracle <= TARGET_GEO_ORACLE)}")
print(f"bandit/oracle, worst run        {worst[0]:9.4f}   <= {TARGET_MAX_ORACLE}   {verdict(worst[0] <= TARGET_MAX_ORACLE)}   ({worst[1]}, seed {worst[2]})")
print(f"bandit/full, geometric mean     {geo_full:9.4f}   <= {TARGET_GEO_FULL}    {verdict(geo_full <= TARGET_GEO_FULL)}")
print(f"bandit cheaper than {', '.join(BASELINES)} on every run: {'yes' if not beaten_by else 'no'}   {verdict(not beaten_by)}")
for line in beaten_by:
    print(f"    {line}")
# How close the call was: a margin of a fraction of a percent is one seed away from a MISS.
near = min(closest)
t["bandit_cheapest_baseline_every_run"]["closest"] = {"policy": near[1], "run": f"{near[2]}/seed{near[3]}", "baseline_over_bandit": near[0]}
print(f"    closest: {near[1]} on {near[2]}, seed {near[3]}, at {near[0]:.4f}x bandit's cost")
print(f"bandit constraint violations    {violations:9d}   == 0      {verdict(violations == 0)}")
if others_violating:
    print(f"    (other policies with violations: {', '.join(others_violating)})")

if speed_path:
    with open(speed_path) as f:
        s = json.load(f)
    summary["speed"] = s
    eps, bpp = s["events_per_s"], s["bytes_per_pair"]
    t["engine_events_per_s"] = {"value": eps, "min": TARGET_EVENTS_PER_S, "pass": eps >= TARGET_EVENTS_PER_S}
    t["engine_bytes_per_pair"] = {"value": bpp, "max": TARGET_BYTES_PER_PAIR, "pass": 0 < bpp <= TARGET_BYTES_PER_PAIR}
    print(f"engine events/s (one core)      {eps:9.0f}   >= {TARGET_EVENTS_PER_S:.0f}   {verdict(eps >= TARGET_EVENTS_PER_S)}   "
          f"({eps / TARGET_EVENTS_PER_S:.3f}x the target, median of {s['repeat']}: {s['events_per_s_min']:.0f} to {s['events_per_s_max']:.0f}; "
          f"{s['engine_over_reference']:.2f}x the time of hash+lookup; second half {s['events_per_s_second_half']:.0f}/s)")
    print(f"engine bytes per tracked pair   {bpp:9.2f}   <= {TARGET_BYTES_PER_PAIR:.0f}       {verdict(0 < bpp <= TARGET_BYTES_PER_PAIR)}   "
          f"({s['memory_bytes']} bytes, {s['pairs_tracked']} pairs, {s['objects_tracked']} objects, "
          f"{s['objects']} objects x {s['events']} events)")

all_pass = all(v["pass"] for v in t.values())
summary["all_pass"] = all_pass
with open(f"{out_dir}/summary.json", "w") as f:
    json.dump(summary, f, indent=2)
print(f"\nall targets: {'PASS' if all_pass else 'MISS'}   (results in {out_dir})")
sys.exit(0 if all_pass else 3)
PYEOF
status=${PIPESTATUS[0]}
set -e
case "$status" in
  0) ;;
  3) [ "$STRICT" = 1 ] && exit 3 ;;
  *) die "the summary failed (exit $status)" ;;
esac
exit 0
