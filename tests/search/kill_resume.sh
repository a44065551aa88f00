#!/bin/sh
# Kill test of search resumption (tests/search.cmake, se_kill_resume): the
# single and addition stages (attn and ntk, a 201-point alpha grid) at 2
# ranks are killed with SIGKILL once a random number of items - drawn here,
# printed, over the single-task and alpha-grid journals together - is done,
# rerun to completion, and their results compared with an uninterrupted run's.
# ntk's grid runs through the pool here too (merge.surrogate.ntk = false): the
# journal's resumption is what is tested.
#   kill_resume.sh MPIEXEC TADIST TEST_SEARCH CFG DATA_DIR MODEL BASE_RUN OUT_DIR
# BASE_RUN holds the fine-tuned task vectors (tests/search.cmake, se_setup).
set -u
MPIEXEC=$1 TADIST=$2 TS=$3 CFG=$4 DATA=$5 MODEL=$6 BASE=$7 OUT=$8
fail() { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../kill_session.sh"
# items: per mode 2 tasks x 2 head sets x 2 splits (single) + 201 x 2 (alpha grid)
TOTAL=$((2 * (8 + 402)))
args() { # out_dir
    echo "$CFG" --set "data.dir=$DATA" --set "model.path=$MODEL" --set "run.out_dir=$1" \
        --set run.stages=single,addition --set merge.methods=sum --set merge.alpha.step=0.005 \
        --set merge.surrogate.ntk=false
}
rm -rf "$OUT" && mkdir -p "$OUT" || fail "cannot create $OUT"
cp -r "$BASE" "$OUT/ref" && cp -r "$BASE" "$OUT/kill" || fail "cannot copy $BASE"

echo "== uninterrupted run"
"$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/ref") > "$OUT/ref.log" 2>&1 ||
    { cat "$OUT/ref.log"; fail "uninterrupted run failed"; }

# the kill point: 1 .. TOTAL - 100 items done (the last ones, a fraction of a
# second, leave no time to kill); SE_KILL_AT=K repeats a failed draw
r=$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')
K=${SE_KILL_AT:-$((1 + r % (TOTAL - 100)))}
echo "== run to be killed after $K of $TOTAL items (own session, so that every rank can be killed)"
start_session "$OUT/kill.log" "$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/kill")
j="$OUT/kill/tiny/search"
done_items() { cat "$j"/*.jsonl 2>/dev/null | grep -c '"item"'; }
i=0 # poll up to 120 s
while [ "$(done_items)" -lt $K ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$OUT/kill.log"; fail "the run ended before $K items"; }
    i=$((i + 1))
    [ $i -le 12000 ] || { pkill -KILL -s "$sid"; fail "fewer than $K items after 120 s"; }
    sleep 0.01
done
kill_session
cat "$OUT/kill.log"
got=$(done_items)
echo "killed with $got item(s) in the journals"
[ "$got" -lt $TOTAL ] || fail "the search finished before the kill (raise the grid in $0)"

echo "== rerun"
"$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/kill") > "$OUT/rerun.log" 2>&1 ||
    { cat "$OUT/rerun.log"; fail "rerun failed"; }
cat "$OUT/rerun.log"
grep -q 'items already done, resuming' "$OUT/rerun.log" || fail "the rerun did not resume"
"$TS" same-search "$OUT/ref/tiny" "$OUT/kill/tiny" attn ntk || exit 1
echo "killed search (after $K items) resumed to the uninterrupted result"
