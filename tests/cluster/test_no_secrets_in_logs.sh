#!/bin/sh
# Secrets never reach a log: a secured `starling cluster` run with SecAgg+ on and every
# process at log level debug; no secret key of the run (keys/*.secret, keys/clients/*.secret,
# Z85 text) appears in any file of the run folder outside keys/, nor in the launcher's output.
set -u
bin=$1 src=$2
work=$(mktemp -d /tmp/sl_nosecrets_XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
pass=0 fail=0
check() { # check DESCRIPTION COMMAND...
    d=$1
    shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $d"; fi
}
"$bin" cluster --config "$src/examples/synthetic-secagg.ini" --no-progress --set run.out_dir="$work/runs" \
    --set run.name=s --set run.log_level=debug --set data.options=clients=8 --set federation.min_clients=3 \
    --set federation.rounds=2 --set federation.round_timeout=60 \
    > out.txt 2>&1
rc=$?
check "cluster run completed (rc $rc)" [ "$rc" -eq 0 ]
check "CURVE was on" grep -q "CURVE on:" runs/s/logs/coordinator.log
check "debug lines were logged" grep -q "DEBUG" runs/s/logs/coordinator.log
check "the ZAP handler logged admissions (fingerprints only)" grep -q "zap: admitted client key" runs/s/logs/coordinator.log
secrets=$(find runs/s/keys -name '*.secret')
n=$(echo "$secrets" | grep -c .)
check "coordinator and client secret keys exist ($n)" [ "$n" -ge 2 ]
leaks=0
for f in $secrets; do
    key=$(head -c 40 "$f")
    check "secret key file $f holds 40 characters" [ "${#key}" -eq 40 ]
    # -F: fixed string (Z85 has regex characters); -r over everything but the keys folder
    if grep -rqF --exclude-dir=keys -e "$key" runs/s out.txt; then
        leaks=$((leaks + 1))
        echo "secret key of $f found in: $(grep -rlF --exclude-dir=keys -e "$key" runs/s out.txt | tr '\n' ' ')"
    fi
done
check "no secret key in any log or run file" [ "$leaks" -eq 0 ]
# The public keys do show up in the allow-list folder only, never their secret halves;
# sanity check that the search would have found a key that is there: the public key.
pub=$(head -c 40 runs/s/keys/coordinator.pub)
check "the search finds a key that is present (its .pub in keys/)" grep -rqF -e "$pub" runs/s/keys
echo "test_no_secrets_in_logs: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
