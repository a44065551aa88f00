#!/bin/sh
# Kill test of sweep resumption (tests/sweep.cmake, sweep_kill_resume): a
# 3-rank sweep of 8 runs is killed with SIGKILL once two runs are done, rerun,
# and its per-run results compared with an uninterrupted sweep's. The rerun
# must skip the done runs and resume the interrupted ones.
#   kill_resume.sh MPIEXEC TADIST TEST_SWEEP CFG DATA_DIR MODEL OUT_DIR
set -u
MPIEXEC=$1 TADIST=$2 TS=$3 CFG=$4 DATA=$5 MODEL=$6 OUT=$7
STEPS=120
fail() { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../kill_session.sh"
sweep() { # out_dir: a 3-rank sweep in the foreground
    "$MPIEXEC" -np 3 --oversubscribe "$TADIST" "$CFG" --set "data.dir=$DATA" \
        --set "model.path=$MODEL" --set "run.out_dir=$1" --set finetune.steps=$STEPS \
        --set finetune.log_every=1000
}
rm -rf "$OUT" && mkdir -p "$OUT" || fail "cannot create $OUT"

echo "== uninterrupted sweep"
sweep "$OUT/ref" > "$OUT/ref.log" 2>&1 || { cat "$OUT/ref.log"; fail "uninterrupted sweep failed"; }

echo "== sweep to be killed (own session, so that every rank can be killed)"
start_session "$OUT/kill.log" "$MPIEXEC" -np 3 --oversubscribe "$TADIST" "$CFG" \
    --set "data.dir=$DATA" --set "model.path=$MODEL" --set "run.out_dir=$OUT/kill" \
    --set finetune.steps=$STEPS --set finetune.log_every=1000
i=0 # poll up to 120 s for two done runs
while [ "$(grep -c 'sweep run [0-9]* done' "$OUT/kill.log")" -lt 2 ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$OUT/kill.log"; fail "the sweep ended before two runs"; }
    i=$((i + 1))
    [ $i -le 2400 ] || { pkill -KILL -s "$sid"; fail "no two done runs after 120 s"; }
    sleep 0.05
done
kill_session
cat "$OUT/kill.log"
[ ! -e "$OUT/kill/sweep/study.md" ] || fail "the sweep finished before the kill (raise STEPS in $0)"

echo "== rerun"
sweep "$OUT/kill" > "$OUT/rerun.log" 2>&1 || { cat "$OUT/rerun.log"; fail "rerun failed"; }
cat "$OUT/rerun.log"
done_before=$(sed -n 's|.*sweep: 8 run(s) over 3 axis(es), \([0-9]*\) done earlier.*|\1|p' "$OUT/rerun.log")
[ -n "$done_before" ] && [ "$done_before" -ge 2 ] && [ "$done_before" -lt 8 ] ||
    fail "the rerun did not skip the done runs ('$done_before' done earlier)"
echo "rerun skipped $done_before done run(s)"
"$TS" same "$OUT/ref/sweep/tables/study_runs.csv" "$OUT/kill/sweep/tables/study_runs.csv" 0 || exit 1
echo "killed sweep resumed to the uninterrupted result"
