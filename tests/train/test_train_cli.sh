#!/bin/sh
# starling train / pretrain / eval end to end on a tiny synthetic dataset: run folder
# contents, eval agrees with train's last epoch, bad input gives clear errors and exit codes.
set -u
bin=$1
dir=$(mktemp -d /tmp/sl_test_train_cli.XXXXXX)
trap 'rm -rf "$dir"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
expect() { # expect NAME WANT_RC PATTERN -- command...
    name=$1 want=$2 pattern=$3
    shift 4
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq "$want" ] && printf '%s' "$out" | grep -q -- "$pattern"; then
        ok
    else
        bad "$name: rc=$rc (want $want), output:"
        printf '%s\n' "$out" | tail -5
    fi
}
O="--set data.name=synthetic --set data.options=clients=8,examples=32,public_clients=2,test_clients=2,img=0,vec=0,ts_len=32
   --set model.d_model=16 --set model.layers=1 --set model.heads=2 --set model.patch_len=8
   --set run.out_dir=$dir --set run.name=central --set train.mode=full --quiet"

# shellcheck disable=SC2086
expect train 0 "accuracy" -- "$bin" train $O --set train.epochs=3
for f in config.ini metrics.jsonl model.safetensors; do
    [ -s "$dir/central/$f" ] && ok || bad "run folder lacks $f"
done
[ "$(wc -l < "$dir/central/metrics.jsonl")" -eq 3 ] && ok || bad "metrics.jsonl should have 3 lines"
# the saved model evaluates to exactly the last epoch's test accuracy
last=$(tail -1 "$dir/central/metrics.jsonl" | sed 's/.*"test_accuracy":\([0-9.]*\).*/\1/')
# shellcheck disable=SC2086
evj=$("$bin" eval --model "$dir/central/model.safetensors" $O --json 2>/dev/null)
acc=$(printf '%s' "$evj" | sed 's/.*"accuracy":\([0-9.]*\).*/\1/')
[ -n "$last" ] && [ "$acc" = "$last" ] && ok || bad "eval accuracy '$acc' != last epoch '$last'"
printf '%s' "$evj" | grep -q '"confusion":\[\[' && ok || bad "eval --json has no confusion matrix"
# the effective config reloads
expect config-reload 0 "d_model = 16" -- "$bin" config --print --config "$dir/central/config.ini"

# shellcheck disable=SC2086
expect pretrain 0 "model $dir/base.safetensors" -- "$bin" pretrain $O --set train.epochs=1 --set train.mode=lora \
    --out "$dir/base.safetensors"
# shellcheck disable=SC2086
expect eval-public 0 "split of synthetic" -- "$bin" eval --model "$dir/base.safetensors" $O --split public
# LoRA fine-tuning from the base
# shellcheck disable=SC2086
expect train-lora 0 "accuracy" -- "$bin" train $O --set train.epochs=1 --set train.mode=lora \
    --set model.base="$dir/base.safetensors" --set run.name=lora

expect pretrain-no-out 2 "say where to write the base model" -- "$bin" pretrain --quiet
expect eval-no-model 2 "say which model" -- "$bin" eval
expect eval-bad-split 2 "expected test, public or train" -- "$bin" eval --model x --split nope
expect eval-missing 1 "cannot open" -- "$bin" eval --model "$dir/nope.safetensors"
head -c 20 "$dir/central/model.safetensors" > "$dir/trunc.safetensors"
expect eval-truncated 1 "truncated header" -- "$bin" eval --model "$dir/trunc.safetensors"
expect train-bad-flag 2 "unknown option '--frob'" -- "$bin" train --frob
expect train-bad-eval-every 2 "expected an integer" -- "$bin" train --eval-every x

echo "test_train_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
