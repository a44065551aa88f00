#!/bin/sh
# Kill test of the coefficient searches (tests/coef.cmake, co_kill_resume):
# the addition stage with learned (adamerging) and black-box (cmaes, bobyqa)
# searches over task and block coefficients, at 2 ranks, gets SIGKILL at a
# random moment of an uninterrupted run's duration (drawn here, printed), is
# rerun to completion, and every search's coefficients and trace must equal
# the uninterrupted run's bit for bit.
#   kill_resume.sh MPIEXEC TADIST TEST_LEARN CFG DATA_DIR MODEL BASE_RUN OUT_DIR
set -u
MPIEXEC=$1 TADIST=$2 TL=$3 CFG=$4 DATA=$5 MODEL=$6 BASE=$7 OUT=$8
fail() { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../kill_session.sh"
args() { # out_dir
    echo "$CFG" --set "data.dir=$DATA" --set "model.path=$MODEL" --set "run.out_dir=$1" \
        --set run.stages=addition --set finetune.modes=attn --set merge.methods=sum \
        --set merge.search=adamerging,cmaes,bobyqa --set merge.coefficients=task,block \
        --set merge.budget=30 --set merge.adamerging.steps=150 \
        --set merge.adamerging.checkpoint_every=7 --set merge.adamerging.log_every=50
}
rm -rf "$OUT" && mkdir -p "$OUT" || fail "cannot create $OUT"
cp -r "$BASE" "$OUT/ref" && cp -r "$BASE" "$OUT/kill" || fail "cannot copy $BASE"

echo "== uninterrupted run"
t0=$(date +%s%N)
"$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/ref") > "$OUT/ref.log" 2>&1 ||
    { cat "$OUT/ref.log"; fail "uninterrupted run failed"; }
ms=$(( ($(date +%s%N) - t0) / 1000000 ))

# the kill moment: 300 ms .. (duration - 300 ms); CO_KILL_MS=K repeats a draw
r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
span=$((ms > 900 ? ms - 600 : 300))
K=${CO_KILL_MS:-$((300 + r % span))}
echo "== run to be killed after $K ms (the uninterrupted run took $ms ms)"
start_session "$OUT/kill.log" "$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/kill")
sleep "$(echo "$K" | awk '{printf "%.3f", $1 / 1000}')"
kill_session
cat "$OUT/kill.log"
ls -l "$OUT/kill/tiny/search" 2>/dev/null

echo "== rerun"
"$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/kill") > "$OUT/rerun.log" 2>&1 ||
    { cat "$OUT/rerun.log"; fail "rerun failed"; }
grep -E 'resuming|already done' "$OUT/rerun.log"
for s in adamerging cmaes bobyqa; do
    for c in task block; do
        "$TL" same-coef "$OUT/ref/tiny" "$OUT/kill/tiny" attn sum "${s}_$c" > /dev/null ||
            fail "${s}_$c differs from the uninterrupted run (kill at $K ms)"
    done
done
echo "killed after $K ms, the searches resumed to the uninterrupted results"
