#!/bin/sh
# Scale and transport-security figures of real `starling cluster` runs on synthetic data
# (tiny model, one local step, so the figures are about coordination, not training).
# Prints one JSON object per configuration.
#
#   bench/cluster_scale.sh [build/cli/starling]
#
#   curve_round_time   median round wall time, CURVE on vs off, 100 clients (10 processes
#                      x 10 virtual), interleaved on/off repeats, and the ratio
#   coordinator_rss    coordinator peak RSS at 10 / 100 / 1,000 clients (must stay flat)
#   processes_200      rounds complete with 200 client processes
set -eu
bin=${1:-build/cli/starling}
src=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sl_bench_cluster_XXXXXX)
trap 'rm -rf "$work"' EXIT

run() { # run NAME CLIENTS PER_PROCESS ROUNDS EXTRA... ; prints the run folder
    name=$1 clients=$2 per=$3 rounds=$4
    shift 4
    "$bin" cluster --config "$src/examples/synthetic.ini" --no-progress --quiet \
        --set run.out_dir="$work" --set run.name="$name" --set data.options="clients=$clients" \
        --set federation.rounds="$rounds" --set federation.fraction=1 --set federation.min_clients=2 \
        --set train.local_steps=1 --set federation.eval_every=0 --set federation.round_timeout=300 \
        --clients "$clients" --per-process "$per" "$@" > /dev/null 2>&1
    echo "$work/$name"
}

median_round() { # median round_seconds of a run folder
    /usr/bin/python3 -c '
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
print(statistics.median(r["round_seconds"] for r in rows[1:] or rows))' "$1"
}

peak_rss() { # coordinator peak RSS (MiB) from its log
    sed -n 's/.*coordinator peak RSS \([0-9.]*\) MiB.*/\1/p' "$1/logs/coordinator.log" | tail -1
}

# 1. CURVE on vs off, interleaved.
on="" off=""
for rep in 1 2 3; do
    d=$(run "curve-on-$rep" 100 10 6)
    on="$on $(median_round "$d")"
    d=$(run "curve-off-$rep" 100 10 6 --insecure)
    off="$off $(median_round "$d")"
done
/usr/bin/python3 -c '
import json, statistics, sys
on = [float(x) for x in sys.argv[1].split()]; off = [float(x) for x in sys.argv[2].split()]
print(json.dumps({"name": "curve_round_time", "clients": 100, "processes": 10, "unit": "s",
  "median_on": statistics.median(on), "median_off": statistics.median(off),
  "spread_on": [min(on), max(on)], "spread_off": [min(off), max(off)],
  "ratio_on_off": statistics.median(on) / statistics.median(off)}))' "$on" "$off"

# 2. Coordinator memory vs clients.
for n in 10 100 1000; do
    per=$((n / 10))
    d=$(run "rss-$n" "$n" "$per" 3 --insecure)
    echo "{\"name\":\"coordinator_rss\",\"clients\":$n,\"processes\":10,\"peak_rss_mib\":$(peak_rss "$d"),\"median_round_s\":$(median_round "$d")}"
done

# 3. 200 client processes.
d=$(run procs-200 200 1 3 --insecure)
rounds=$(wc -l < "$d/metrics.jsonl")
echo "{\"name\":\"processes_200\",\"clients\":200,\"processes\":200,\"rounds_completed\":$rounds,\"median_round_s\":$(median_round "$d"),\"coordinator_peak_rss_mib\":$(peak_rss "$d")}"
