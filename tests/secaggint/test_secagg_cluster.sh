#!/bin/sh
# `starling cluster` with SecAgg+ on (examples/synthetic-secagg.ini, small):
#   run           every round goes through the SecAgg+ stages and completes; no SecAgg
#                 message arrives after its round closed
#   kill_clients  clients crash mid-round (--kill-clients): the stages drop them, the run
#                 completes (rounds below the threshold fail and are retried)
set -u
what=$1 bin=$2 src=$3
work=$(mktemp -d /tmp/sl_secagg_cluster_XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
pass=0 fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
common="--config $src/examples/synthetic-secagg.ini --no-progress --set run.out_dir=$work/runs
 --set data.options=clients=8 --set federation.rounds=3 --set federation.fraction=1
 --set federation.min_clients=3 --set train.local_epochs=1"

# The `secagg` object of every metrics line (docs/secagg.md): four stages with times >= 0
# that fit in the round, bytes both ways, entered(stage) = entered(previous) - dropped,
# entered(first) = sampled, included = reported = the last stage's entered. clean: nobody
# dropped.
secagg_metrics() {
    python3 - "$1" "$2" <<'PY'
import json, sys
stages = ["advertise_keys", "share_keys", "masked_input", "unmasking"]
ok = True
for line in open(sys.argv[1]):
    m = json.loads(line)
    sa = m.get("secagg")
    if not sa or sa.get("status") != "completed":
        print("round", m.get("round"), "has no completed secagg object"); ok = False; continue
    prev = m["sampled"]
    total = 0.0
    for s in stages:
        st = sa.get(s)
        if st is None:
            print("round", m["round"], "lacks", s); ok = False; break
        ok &= st["seconds"] >= 0 and st["bytes_up"] > 0 and st["bytes_down"] > 0
        ok &= st["entered"] == prev and 0 <= st["dropped"] <= st["entered"]
        if sys.argv[2] == "clean":
            ok &= st["dropped"] == 0
        prev = st["entered"] - st["dropped"]
        total += st["seconds"]
    ok &= sa["included"] == m["reported"] == sa["masked_input"]["entered"] - sa["masked_input"]["dropped"]
    ok &= total <= m["round_seconds"] + 1e-6
    ok &= sa["aborted_attempts"] == m["attempt"] or sys.argv[2] != "clean"
    if not ok:
        print("inconsistent secagg metrics:", line.strip()); break
sys.exit(0 if ok else 1)
PY
}

case $what in
run)
    # shellcheck disable=SC2086
    "$bin" cluster $common --set run.name=a --set federation.round_timeout=20 > out.txt 2>&1
    rc=$?
    check "exit code 0 (got $rc)" [ "$rc" -eq 0 ]
    check "3 metrics lines" [ "$(wc -l < runs/a/metrics.jsonl)" -eq 3 ]
    check "summary says completed" grep -q '"status":[[:space:]]*"completed"' runs/a/summary.json
    check "SecAgg+ was on" grep -q "secagg: SecAgg+ on" runs/a/logs/coordinator.log
    check "every client reported every round" [ "$(grep -c '"reported":8' runs/a/metrics.jsonl)" -eq 3 ]
    check "no late SecAgg message" [ -z "$(grep -l 'unexpected SECAGG_UP' runs/a/logs/*.log)" ]
    check "no aborted round" [ -z "$(grep -l 'aborted' runs/a/logs/coordinator.log)" ]
    check "final model written" [ -s runs/a/model.safetensors ]
    check "per-stage SecAgg metrics, consistent" secagg_metrics runs/a/metrics.jsonl clean
    ;;
kill_clients)
    # shellcheck disable=SC2086
    "$bin" cluster $common --set run.name=k --set federation.round_timeout=8 --kill-clients 0.3 > out.txt 2>&1
    rc=$?
    check "exit code 0 despite crashes (got $rc)" [ "$rc" -eq 0 ]
    check "crashes were injected" grep -q "injected crash" runs/k/logs/client-*.log
    check "all 3 rounds completed" [ "$(wc -l < runs/k/metrics.jsonl)" -eq 3 ]
    check "per-stage SecAgg metrics, consistent" secagg_metrics runs/k/metrics.jsonl crashes
    ;;
*)
    echo "unknown test $what"
    exit 2
    ;;
esac
echo "test_secagg_cluster_$what: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
