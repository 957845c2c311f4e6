#!/bin/sh
# Integration: a real `starling cluster` run (coordinator + client processes, CURVE) on
# synthetic data with dp.mode = central and a privacy budget. Checks that every round's
# metrics line has a finite epsilon, strictly increasing, equal to the accountant's answer
# (`starling privacy epsilon`), that the run stops with status "budget" before exceeding
# dp.target_epsilon, and that one more round would have exceeded it.
set -u
bin=$1 src=$2
py=/usr/bin/python3
work=$(mktemp -d /tmp/sl_dpcluster_XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
pass=0 fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
# q = 5 / 10 = 0.5, z = 2: epsilon 3.1218 after 5 rounds, 3.4039 after 6
target=3.3
"$bin" cluster --config "$src/examples/synthetic.ini" --no-progress --set run.out_dir="$work/runs" \
    --set run.name=dp --clients 10 --per-process 5 --set data.options=clients=10 \
    --set federation.rounds=20 --set federation.fraction=0.5 --set federation.min_clients=3 \
    --set train.local_epochs=1 --set federation.round_timeout=30 \
    --set dp.mode=central --set dp.clip=0.5 --set dp.noise_multiplier=2 --set dp.target_epsilon=$target \
    > out.txt 2>&1
rc=$?
check "exit code 0 (got $rc)" [ "$rc" -eq 0 ]
check "summary says budget" grep -q '"status":[[:space:]]*"budget"' runs/dp/summary.json
check "5 rounds ran" [ "$(wc -l < runs/dp/metrics.jsonl)" -eq 5 ]
check "the coordinator used the DP aggregator" grep -q "dp: mode central" runs/dp/logs/coordinator.log
check "the budget stop was logged" grep -q "privacy budget reached after round 5" runs/dp/logs/coordinator.log
$py - runs/dp/metrics.jsonl "$target" > eps.txt <<'PYEOF'
import json, math, sys
eps = [json.loads(l)["epsilon"] for l in open(sys.argv[1])]
target = float(sys.argv[2])
ok = all(math.isfinite(e) for e in eps) and all(b > a for a, b in zip(eps, eps[1:])) and eps[-1] <= target
print(" ".join("%.17g" % e for e in eps))
sys.exit(0 if ok else 1)
PYEOF
check "epsilon finite, increasing, <= target: $(cat eps.txt)" [ $? -eq 0 ]
i=1
for e in $(cat eps.txt); do
    want=$("$bin" privacy epsilon --sampling-rate 0.5 --noise-multiplier 2 --steps $i --delta 1e-5)
    check "round $i epsilon $e == accountant $want" $py -c "import sys; sys.exit(abs($e - $want) > 1e-9 * $want)"
    i=$((i + 1))
done
next=$("$bin" privacy epsilon --sampling-rate 0.5 --noise-multiplier 2 --steps 6 --delta 1e-5)
check "one more round would exceed the target ($next > $target)" $py -c "import sys; sys.exit(not $next > $target)"
check "final epsilon printed" grep -q "privacy spent, epsilon" out.txt
echo "test_dp_cluster: $pass passed, $fail failed"
[ "$fail" -eq 0 ] || { tail -20 out.txt; exit 1; }
