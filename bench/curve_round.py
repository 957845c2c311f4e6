#!/usr/bin/python3
"""What CurveZMQ costs in a realistic federated round. One JSON object per regime.

    /usr/bin/python3 bench/curve_round.py [--bin build/cli/starling] [--repeats 5] [--regimes a,b]

The HAPT job (examples/hapt.ini: LoRA r=8 on models/hapt-base.safetensors, AdamW, batch 32,
real local training) with 100 clients: the 16 federated HAPT users' windows re-partitioned
IID into 100 clients (data.partition = iid, data.clients = 100), 10 client processes x 10
virtual clients, one BLAS thread each (train.threads = 1; OPENBLAS_NUM_THREADS=1 because the
client process does not apply train.threads itself). `starling cluster` with CURVE (its
default: throwaway keys, ZAP allow-list) vs `--insecure`: the same ipc:// transport, the
same processes, without CURVE. On and off runs alternate; the order flips every repeat.

Regimes (same model, same 58,962-byte update per client and direction, same 100 clients):
  hapt_1_epoch     the HAPT job as configured: one local epoch (2 steps of 32 per client)
  hapt_5_epochs    five local epochs: five times the training per round
  hapt_1_step_b1   one step of batch 1: next to no training, the round is messaging

Figures per run, over the rounds after the first (connection set-up) and before the last
(the final evaluation):
  round_s          median round wall time (metrics.jsonl round_seconds)
  cpu_s            CPU time (user + system, all threads, from /proc/PID/stat) of the
                   coordinator and every client process per round: sampled when
                   metrics.jsonl gains the row of round 1 and of round R-1
  train_cpu_s      CPU time of local training per round (sum over the 100 clients, from the
                   clients' debug log: the training thread's CPU clock around sl_train_local)
The rest of cpu_s (cpu_s - train_cpu_s) is messaging, (de)serialization, CURVE,
aggregation, scheduling. The machine is shared: load_1min is the 1-minute load average
after each run; wall times are context, the CPU figures are what load disturbs least.
"""
import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REGIMES = {
    "hapt_1_epoch": (["train.local_epochs=1"], 10),
    "hapt_5_epochs": (["train.local_epochs=5"], 5),
    "hapt_1_step_b1": (["train.local_steps=1", "train.batch_size=1"], 30),
}
TICK = os.sysconf("SC_CLK_TCK")
TRAINED = re.compile(r"round (\d+) trained \d+ steps in [0-9.]+ s \(([0-9.]+) s CPU\)")


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    out.append(int(d))
            except OSError:
                pass
    return out


def role(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        return argv[1].decode() if len(argv) > 1 else ""
    except OSError:
        return ""


def cpu_seconds(pids):
    """utime + stime of each pid (seconds); {} entries for gone pids are skipped."""
    out = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[p] = (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return out


def metrics_rows(run_dir):
    try:
        with open(run_dir + "/metrics.jsonl") as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except (OSError, ValueError):
        return []


def run(args, work, name, regime, secure):
    sets, rounds = REGIMES[regime]
    run_dir = os.path.join(work, name)
    cmd = [args.bin, "cluster", "--config", "examples/hapt.ini", "--no-progress", "--quiet",
           "--clients", "100", "--per-process", "10"]
    for kv in ["run.out_dir=" + work, "run.name=" + name, "run.log_level=debug", "data.partition=iid",
               "data.clients=100", "federation.fraction=1", "federation.min_clients=2",
               "federation.eval_every=0", "federation.round_timeout=300", f"federation.rounds={rounds}"] + sets:
        cmd += ["--set", kv]
    if not secure:
        cmd.append("--insecure")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=args.src, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids, marks = [], {}
    want = {1: "start", rounds - 1: "end"}
    while proc.poll() is None:
        if len(kids) < 11:
            kids = children(proc.pid)
            marks["coordinator"] = [p for p in kids if role(p) == "coordinator"]
        n = len(metrics_rows(run_dir))
        for r, tag in want.items():
            if n >= r and tag not in marks:
                marks[tag] = (cpu_seconds(kids), n)
        time.sleep(0.02)
    if proc.returncode != 0 or "start" not in marks or "end" not in marks:
        sys.exit(f"curve_round: run {name} failed (exit {proc.returncode}); see {run_dir}/logs")
    (c0, n0), (c1, n1) = marks["start"], marks["end"]
    if n0 != 1 or n1 != rounds - 1:
        print(f"curve_round: {name}: sampled late (rows {n0}, {n1})", file=sys.stderr)
    rows = metrics_rows(run_dir)[n0:n1]  # rounds n0+1 .. n1, the ones the CPU window spans
    span = len(rows)
    cpu = sum(c1[p] - c0.get(p, 0.0) for p in c1) / span
    coord = [p for p in c1 if p in marks["coordinator"]]
    coord_cpu = sum(c1[p] - c0.get(p, 0.0) for p in coord) / span
    train = {}
    for log in glob.glob(run_dir + "/logs/client-*.log"):
        with open(log) as f:
            for line in f:
                m = TRAINED.search(line)
                if m:
                    train[int(m.group(1))] = train.get(int(m.group(1)), 0.0) + float(m.group(2))
    train_cpu = sum(train.get(r["round"], 0.0) for r in rows) / span
    out = {
        "round_s": statistics.median(r["round_seconds"] for r in rows),
        "cpu_s": cpu, "coordinator_cpu_s": coord_cpu, "train_cpu_s": train_cpu,
        "bytes": statistics.median(r["bytes_up"] + r["bytes_down"] for r in rows),
        "update_bytes": rows[0]["bytes_up"] / rows[0]["reported"],
        "load": os.getloadavg()[0],
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/cli/starling")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--regimes", default=",".join(REGIMES))
    args = ap.parse_args()
    args.src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    args.bin = os.path.abspath(args.bin)
    regimes = args.regimes.split(",")
    work = tempfile.mkdtemp(prefix="sl_bench_curve_")
    res = {(g, m): [] for g in regimes for m in ("on", "off")}
    try:
        for rep in range(args.repeats):
            for g in regimes:
                for mode in (("on", "off") if rep % 2 == 0 else ("off", "on")):
                    res[(g, mode)].append(run(args, work, f"{g}-{mode}-{rep}", g, mode == "on"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for g in regimes:
        on, off = res[(g, "on")], res[(g, "off")]

        def med(rows, k):
            return statistics.median(r[k] for r in rows)

        def spread(rows, k):
            return [round(min(r[k] for r in rows), 4), round(max(r[k] for r in rows), 4)]

        print(json.dumps({
            "name": "curve_round", "regime": g, "clients": 100, "processes": 10, "repeats": len(on),
            "update_bytes": round(on[0]["update_bytes"]), "bytes_per_round": med(on, "bytes"),
            "unit": "s per round",
            "round_s_on": round(med(on, "round_s"), 4), "round_s_off": round(med(off, "round_s"), 4),
            "round_s_spread_on": spread(on, "round_s"), "round_s_spread_off": spread(off, "round_s"),
            "round_ratio_on_off": round(med(on, "round_s") / med(off, "round_s"), 4),
            "cpu_s_on": round(med(on, "cpu_s"), 4), "cpu_s_off": round(med(off, "cpu_s"), 4),
            "cpu_s_spread_on": spread(on, "cpu_s"), "cpu_s_spread_off": spread(off, "cpu_s"),
            "cpu_ratio_on_off": round(med(on, "cpu_s") / med(off, "cpu_s"), 4),
            "curve_cpu_s": round(med(on, "cpu_s") - med(off, "cpu_s"), 4),
            "coordinator_cpu_s_on": round(med(on, "coordinator_cpu_s"), 4),
            "coordinator_cpu_s_off": round(med(off, "coordinator_cpu_s"), 4),
            "train_cpu_s": round(med(on + off, "train_cpu_s"), 4),
            "train_share_of_cpu_off": round(med(off, "train_cpu_s") / med(off, "cpu_s"), 3),
            "load_1min": [round(r["load"], 1) for r in on + off]}), flush=True)


if __name__ == "__main__":
    main()
