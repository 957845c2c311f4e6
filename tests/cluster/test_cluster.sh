#!/bin/sh
# Integration tests of `starling cluster` on synthetic data (small model, few rounds):
#   run           a secured cluster completes, writes metrics, summary, report and the model
#   kill_clients  clients crash mid-round (--kill-clients); the run still completes
#   resume        SIGKILL the coordinator mid-run, resume: the final model is bit-identical
#                 to an uninterrupted run with the same seed
set -u
what=$1 bin=$2 src=$3
work=$(mktemp -d /tmp/sl_cluster_XXXXXX)
trap 'pkill -9 -f "$work/" 2>/dev/null; rm -rf "$work"' EXIT
cd "$work" || exit 1
pass=0 fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
common="--config $src/examples/synthetic.ini --no-progress --set run.out_dir=$work/runs
 --set data.options=clients=6 --set federation.rounds=4 --set federation.fraction=1
 --set federation.min_clients=3 --set train.local_epochs=1 --set federation.round_timeout=20"

case $what in
run)
    # shellcheck disable=SC2086
    "$bin" cluster $common --set run.name=a --log-level debug --set train.threads=0 > out.txt 2>&1
    rc=$?
    check "exit code 0 (got $rc)" [ "$rc" -eq 0 ]
    check "4 metrics lines" [ "$(wc -l < runs/a/metrics.jsonl)" -eq 4 ]
    check "--log-level reached the clients" grep -q " DEBUG " runs/a/logs/client-0.log
    # train.threads = 0 (every core) is split between the 6 client processes
    cores=$(nproc)
    threads=$((cores > 6 ? cores / 6 : 1))
    check "BLAS threads split ($threads per process)" grep -qx "threads = $threads" runs/a/cluster.ini
    check "summary says completed" grep -q '"status":[[:space:]]*"completed"' runs/a/summary.json
    check "final model written" [ -s runs/a/model.safetensors ]
    check "report written" grep -q "<svg" runs/a/report.html
    check "CURVE keys were used" grep -q "CURVE on: 6 authorized" runs/a/logs/coordinator.log
    check "final table printed" grep -q "accuracy, federated" out.txt
    # (the [i] keeps pgrep from matching its own command line)
    check "no process left" [ -z "$(pgrep -f "$work/runs/a/cluster.in[i]")" ]
    ;;
kill_clients)
    # shellcheck disable=SC2086
    "$bin" cluster $common --set run.name=k --kill-clients 0.3 --set federation.round_timeout=8 > out.txt 2>&1
    rc=$?
    check "exit code 0 despite crashes (got $rc)" [ "$rc" -eq 0 ]
    check "crashes were injected" grep -q "injected crash" runs/k/logs/client-*.log
    check "crashed clients were restarted" grep -q "restarting it" out.txt
    check "all 4 rounds completed" [ "$(wc -l < runs/k/metrics.jsonl)" -eq 4 ]
    ;;
resume)
    # shellcheck disable=SC2086
    "$bin" cluster $common --set run.name=ref --set federation.rounds=6 > ref.txt 2>&1
    check "reference run completed" [ $? -eq 0 ]
    # shellcheck disable=SC2086
    "$bin" cluster $common --set run.name=cut --set federation.rounds=6 > cut.txt 2>&1 &
    cluster=$!
    i=0
    while [ "$(cat runs/cut/metrics.jsonl 2>/dev/null | wc -l)" -lt 2 ] && [ $i -lt 600 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    pkill -9 -f "coordinator --config $work/runs/cut/cluster.ini"
    wait $cluster
    check "the killed run fails" [ $? -ne 0 ]
    check "the killed run stopped early" [ "$(wc -l < runs/cut/metrics.jsonl)" -lt 6 ]
    "$bin" cluster --resume runs/cut --config runs/cut/cluster.ini --no-progress > resume.txt 2>&1
    check "resumed run completed" [ $? -eq 0 ]
    check "resumed run has all 6 rounds" [ "$(wc -l < runs/cut/metrics.jsonl)" -eq 6 ]
    check "final model bit-identical to the uninterrupted run" cmp -s runs/ref/model.safetensors runs/cut/model.safetensors
    ;;
*)
    echo "unknown test $what"
    exit 2
    ;;
esac
echo "test_cluster_$what: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
