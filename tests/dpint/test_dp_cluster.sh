#!/bin/sh
# Integration: a real `starling cluster` run (coordinator + client processes, CURVE) on
# synthetic data with dp.mode = central and a privacy budget. Checks that every round's
# metrics line has a finite epsilon, strictly increasing, equal to the accountant's answer
# (`starling privacy epsilon`), that the run stops with status "budget" before exceeding
# dp.target_epsilon, and that one more round would have exceeded it.
#   budget   the above
#   resume   SIGKILL the coordinator of a DP run (central, adaptive clipping, seeded test
#            noise) mid-run, resume it: epsilon keeps counting and the final model is
#            bit-identical to an uninterrupted run
#   secagg   examples/synthetic-dp-secagg.ini (distributed DP under SecAgg+), 4 rounds: every
#            round's epsilon equals the reference accountant charged with the multiplier
#            implied by the number of inputs in the secure sum
set -u
what=$1 bin=$2 src=$3
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
common="--config $src/examples/synthetic.ini --no-progress --set run.out_dir=$work/runs --clients 10
 --per-process 5 --set data.options=clients=10 --set federation.fraction=0.5 --set federation.min_clients=3
 --set train.local_epochs=1 --set federation.round_timeout=30 --set dp.mode=central --set dp.clip=0.5"
case $what in
budget)
    # q = 5 / 10 = 0.5, z = 2: epsilon 3.1218 after 5 rounds, 3.4039 after 6
    target=3.3
    # shellcheck disable=SC2086
    "$bin" cluster $common --set run.name=dp --set federation.rounds=20 --set dp.noise_multiplier=2 \
        --set dp.target_epsilon=$target > out.txt 2>&1
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
    ok=$?
    check "epsilon finite, increasing, <= target: $(cat eps.txt)" [ $ok -eq 0 ]
    i=1
    for e in $(cat eps.txt); do
        want=$("$bin" privacy epsilon --sampling-rate 0.5 --noise-multiplier 2 --steps $i --delta 1e-5)
        check "round $i epsilon $e == accountant $want" $py -c "import sys; sys.exit(abs($e - $want) > 1e-9 * $want)"
        i=$((i + 1))
    done
    next=$("$bin" privacy epsilon --sampling-rate 0.5 --noise-multiplier 2 --steps 6 --delta 1e-5)
    check "one more round would exceed the target ($next > $target)" $py -c "import sys; sys.exit(not $next > $target)"
    check "final epsilon printed" grep -q "privacy spent, epsilon" out.txt
    ;;
resume)
    dpopts="--set federation.rounds=6 --set dp.noise_multiplier=1 --set dp.adaptive_clip=true
     --set dp.insecure_seeded_noise=true"
    # shellcheck disable=SC2086
    "$bin" cluster $common $dpopts --set run.name=ref > ref.txt 2>&1
    check "reference run completed" [ $? -eq 0 ]
    # shellcheck disable=SC2086
    "$bin" cluster $common $dpopts --set run.name=cut > cut.txt 2>&1 &
    cluster=$!
    i=0
    while [ "$(cat runs/cut/metrics.jsonl 2>/dev/null | wc -l)" -lt 2 ] && [ $i -lt 600 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    # the coordinator this test started (its command line names this test's own folder)
    coord=$(pgrep -f "coordinator --config $work/runs/cut/cluster.ini")
    [ -n "$coord" ] && kill -9 $coord
    wait $cluster
    check "the killed run fails" [ $? -ne 0 ]
    check "the killed run stopped early" [ "$(wc -l < runs/cut/metrics.jsonl)" -lt 6 ]
    "$bin" cluster --resume runs/cut --config runs/cut/cluster.ini --no-progress > resume.txt 2>&1
    check "resumed run completed" [ $? -eq 0 ]
    check "resumed run has all 6 rounds" [ "$(wc -l < runs/cut/metrics.jsonl)" -eq 6 ]
    check "the accountant was restored" grep -q "dp: resumed:" runs/cut/logs/coordinator.log
    check "same epsilon after 6 rounds" [ "$(tail -1 runs/ref/metrics.jsonl | sed 's/.*"epsilon"://')" = \
        "$(tail -1 runs/cut/metrics.jsonl | sed 's/.*"epsilon"://')" ]
    check "final model bit-identical to the uninterrupted run" cmp -s runs/ref/model.safetensors runs/cut/model.safetensors
    ;;
secagg)
    # examples/synthetic-dp-secagg.ini, 4 rounds: distributed DP under SecAgg+ (discrete
    # Gaussian shares added by the clients before masking). Every round's epsilon must equal
    # an independent computation: tests/dp/rdp_reference.py charged, per round, q = 50/200 and
    # z_eff = z sqrt(r / m_min) C / (C + sqrt(d) / s), r = the round's reported inputs, s the
    # quantizer scale derived here from the headroom rule of docs/privacy.md.
    "$bin" cluster --config "$src/examples/synthetic-dp-secagg.ini" --per-process 50 --no-progress \
        --set run.out_dir="$work/runs" --set run.name=ddg --set federation.rounds=4 > out.txt 2>&1
    rc=$?
    check "exit code 0 (got $rc)" [ "$rc" -eq 0 ]
    check "summary says completed" grep -q '"status":[[:space:]]*"completed"' runs/ddg/summary.json
    check "4 rounds ran" [ "$(wc -l < runs/ddg/metrics.jsonl)" -eq 4 ]
    check "the coordinator ran DP with SecAgg" grep -q "clients add discrete Gaussian noise shares" \
        runs/ddg/logs/coordinator.log
    check "4 secure sums charged" [ "$(grep -c 'noise shares charged' runs/ddg/logs/coordinator.log)" -eq 4 ]
    # the write-ahead privacy ledger: a 16-byte header and one 64-byte record per charge
    check "privacy.ledger holds 4 charges" [ "$(stat -c %s runs/ddg/privacy.ledger)" -eq $((16 + 4 * 64)) ]
    check "final epsilon printed" grep -q "privacy spent, epsilon" out.txt
    dim=$(sed -n 's/.*model: \([0-9]*\) parameters, \([0-9]*\) trainable.*/\2/p' runs/ddg/logs/coordinator.log | head -1)
    $py - runs/ddg/metrics.jsonl "$src/tests/dp" "$dim" > eps.txt <<'PYEOF'
import json, math, sys
sys.path.insert(0, sys.argv[2])
import rdp_reference as ref
rows = [json.loads(l) for l in open(sys.argv[1])]
d = int(sys.argv[3])
z, C, m_min, bits, pop, delta = 1.0791015625, 0.5, 40, 32, 200, 1e-5
rho = z / math.sqrt(m_min)
def scale(n):
    lg = (n - 1).bit_length()
    b0 = bits
    while b0 > 8 and (2 ** (b0 - 1) - 1) * rho > 1e7:
        b0 -= 1
    for h in range(9):
        b = b0 if b0 + lg + h <= 32 else 32 - lg - h
        L = 2 ** (b - 1) - 1
        if n * L + 12 * math.sqrt(n) * L * rho <= 2 ** (b + lg + h - 1) - 1:
            return L / C
    raise SystemExit("no ring")
hist, ok = [], len(rows) == 4 and d > 0
for r in rows:
    n, inc = r["sampled"], r["reported"]
    sa = r.get("secagg") or {}
    ok = ok and n == 50 and inc >= m_min and sa.get("status") == "completed" and sa.get("included") == inc
    hist.append((n / pop, z * math.sqrt(inc / m_min) * C / (C + math.sqrt(d) / scale(n)), 1))
    want = ref.epsilon(hist, delta)[0]
    ok = ok and abs(r["epsilon"] - want) <= 1e-9 * want
    print("%.17g %.17g" % (r["epsilon"], want))
sys.exit(0 if ok else 1)
PYEOF
    ok=$?
    check "epsilon per round == reference at z_eff(reported), secagg metrics present: $(tr '\n' ' ' < eps.txt)" \
        [ $ok -eq 0 ]
    ;;
*)
    echo "unknown test $what"
    exit 2
    ;;
esac
echo "test_dp_cluster_$what: $pass passed, $fail failed"
[ "$fail" -eq 0 ] || { tail -20 out.txt; exit 1; }
