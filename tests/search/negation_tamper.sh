#!/bin/sh
# Tamper test of the negation check (tests/search.cmake, se_negation_tampered):
# check-negation must pass on the negation stage's own results.json and fail
# on copies edited after the stage - the alpha moved off the grid with a
# perfect target and a dead control, each of those alone, and an alpha moved
# to another grid point. A checker that only re-derived the best grid index
# would pass them all.
#   negation_tamper.sh TEST_SEARCH RUN_DIR OUT_DIR DATA_DIR THETA0
set -u
TS=$1 RUN=$2 OUT=$3 DATA=$4 MODEL=$5
fail() { echo "FAIL: $*"; exit 1; }
check() { # mode: check-negation of quad (control stripes) on the copy
    "$TS" check-negation "$OUT/tiny" "$DATA" "$MODEL" "$1" quad stripes 0 1 0.05 0.95 0
}
rm -rf "$OUT" && mkdir -p "$OUT" && cp -r "$RUN/tiny" "$OUT/" || fail "cannot copy $RUN"
cp "$OUT/tiny/results.json" "$OUT/results.orig"

echo "== the stage's own results.json passes"
for m in attn ntk; do
    check $m || fail "check-negation rejects the untampered $m results"
done

k=modes.attn.negation.quad
alpha=$(sed -n '/"negation"/,$p' "$OUT/tiny/results.json" | sed -n 's/.*"alpha":[[:space:]]*\([0-9.e-]*\).*/\1/p' | head -1)
echo "stage's alpha for attn/quad: $alpha"
other=0.5 # another grid point than the stage's
[ "$alpha" != "0.5" ] || other=0.45
n=0
for edit in "alpha=0.123 target_test=0.999 control_test=0" "alpha=0.123" "target_test=0.999" \
    "control_test=0" "alpha=$other"; do
    n=$((n + 1))
    cp "$OUT/results.orig" "$OUT/tiny/results.json"
    for kv in $edit; do
        "$TS" set-json "$OUT/tiny" "$k.${kv%%=*}" "${kv#*=}" > /dev/null || fail "set-json $kv"
    done
    echo "== tampered ($edit): must fail"
    if check attn > "$OUT/check$n.log" 2>&1; then
        cat "$OUT/check$n.log"
        fail "check-negation accepted a results.json with $edit"
    fi
    cat "$OUT/check$n.log"
    key=${edit%%=*}
    grep -q "FAIL: modes.attn.negation.quad.$key is" "$OUT/check$n.log" ||
        fail "the failure does not name the edited key $key"
done
echo "check-negation rejected all $n tampered copies"
