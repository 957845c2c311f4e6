#!/bin/sh
# The CLI's contract: help lists every command, bad input gives exit 2 and one clear line.
set -u
bin=$1
pass=0
fail=0
expect() { # expect NAME WANT_RC PATTERN -- command...
    name=$1 want=$2 pattern=$3
    shift 4
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq "$want" ] && printf '%s' "$out" | grep -q -- "$pattern"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: rc=$rc (want $want), output:"
        printf '%s\n' "$out" | head -5
    fi
}
expect help 0 "Commands:" -- "$bin" --help
for c in coordinator client cluster pretrain train eval keygen privacy report dataset bench config; do
    expect "help lists $c" 0 "^  $c " -- "$bin" --help
done
expect version 0 "^starling [0-9]" -- "$bin" --version
expect no-args 2 "Usage:" -- "$bin"
expect unknown-command 2 "unknown command 'frobnicate'" -- "$bin" frobnicate
expect unknown-flag 2 "unknown option '--frob'" -- "$bin" --frob
expect config-unknown-flag 2 "Try 'starling config --help'" -- "$bin" config --print --bogus
expect config-bad-set 2 "did you mean \"rounds\"" -- "$bin" config --print --set federation.round=3
expect config-bad-value 2 "expected an integer" -- "$bin" config --print --set federation.rounds=x
expect config-missing-file 2 "cannot open" -- "$bin" config --print --config /nonexistent.ini
expect config-print 0 "^\[federation\]" -- "$bin" config --print
expect config-describe 0 "## \[dp\]" -- "$bin" config --describe
echo "test_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
