#!/bin/sh
# Graceful-stop tests (tests/stop.cmake): a 2-rank run gets a stop signal in
# the middle of a long stage, must end with exit status 75 (TD_EXIT_STOPPED)
# having written its checkpoint or journal, and the same command run again
# must resume and end with the results of an uninterrupted run.
#   stop_resume.sh WHAT MPIEXEC TADIST TEST_FINETUNE TEST_SEARCH TEST_LEARN CFG DATA MODEL BASE OUT
# WHAT:
#   finetune  SIGTERM to every rank (what Slurm sends at the time limit and on
#             scancel) at step ~100 of 600; fine-tuning checkpoints are off
#             (checkpoint_every = 0, checkpoint_minutes 10), so the checkpoint
#             the rerun resumes from is the one the stop wrote.
#   search    SIGUSR1 to mpirun, which forwards it to the ranks (what the batch
#             script does with Slurm's --signal=B:USR1@T), once ~100 items of
#             the single and addition stages' journals are done.
#   coef      SIGTERM to every rank during an AdaMerging search (checkpoints
#             only at the stop), followed by a CMA-ES search.
# BASE holds fine-tuned task vectors (tests/search.cmake, se_setup).
set -u
WHAT=$1 MPIEXEC=$2 TADIST=$3 TF=$4 TS=$5 TL=$6 CFG=$7 DATA=$8 MODEL=$9
shift 9
BASE=$1 OUT=$2
fail() { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../kill_session.sh"

case $WHAT in
finetune)
    args() {
        echo "$CFG" --set "data.dir=$DATA" --set "model.path=$MODEL" --set "run.out_dir=$1" \
            --set finetune.modes=attn --set finetune.steps=600 --set finetune.log_every=50 \
            --set finetune.checkpoint_every=0 --set finetune.train_heads=true
    }
    ready() { [ "$(grep -c 'step 100/600' "$OUT/stop.log")" -ge 2 ]; }
    SIG=TERM TO=ranks ;;
search)
    args() {
        echo "$CFG" --set "data.dir=$DATA" --set "model.path=$MODEL" --set "run.out_dir=$1" \
            --set run.stages=single,addition --set merge.methods=sum --set merge.alpha.step=0.005
    }
    ready() { [ "$(cat "$OUT/stop/tiny/search/"*.jsonl 2>/dev/null | grep -c '"item"')" -ge 100 ]; }
    SIG=USR1 TO=mpirun ;;
coef)
    args() {
        echo "$CFG" --set "data.dir=$DATA" --set "model.path=$MODEL" --set "run.out_dir=$1" \
            --set run.stages=addition --set finetune.modes=attn --set merge.methods=sum \
            --set merge.search=adamerging,cmaes --set merge.coefficients=task --set merge.budget=30 \
            --set merge.adamerging.steps=150 --set merge.adamerging.checkpoint_every=1000 \
            --set merge.adamerging.log_every=25
    }
    ready() { grep -q 'adamerging attn/sum/task: step 50/150' "$OUT/stop.log"; }
    SIG=TERM TO=ranks ;;
*) fail "unknown test '$WHAT'" ;;
esac

rm -rf "$OUT" && mkdir -p "$OUT" || fail "cannot create $OUT"
if [ "$WHAT" = finetune ]; then
    mkdir -p "$OUT/ref" "$OUT/stop"
else
    cp -r "$BASE" "$OUT/ref" && cp -r "$BASE" "$OUT/stop" || fail "cannot copy $BASE"
fi

echo "== uninterrupted run"
"$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/ref") > "$OUT/ref.log" 2>&1 ||
    { cat "$OUT/ref.log"; fail "uninterrupted run failed"; }

echo "== run to be stopped with SIG$SIG to $TO"
start_session "$OUT/stop.log" "$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/stop")
i=0 # poll up to 120 s
until ready; do
    kill -0 "$pid" 2>/dev/null || { cat "$OUT/stop.log"; fail "the run ended before the signal"; }
    i=$((i + 1))
    [ $i -le 12000 ] || { kill_session; fail "not ready for the signal after 120 s"; }
    sleep 0.01
done
if [ $TO = mpirun ]; then
    kill -$SIG "$pid"
else # the ranks: mpirun's children ($pid is mpirun itself, setsid did not fork)
    ranks=$(pgrep -P "$pid" | tr '\n' ' ')
    [ "$(echo $ranks | wc -w)" -eq 2 ] || { kill_session; fail "ranks of mpirun $pid: '$ranks'"; }
    kill -$SIG $ranks
fi
i=0 # the stop must end the run within 60 s
while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    [ $i -le 6000 ] || { kill_session; fail "still running 60 s after SIG$SIG"; }
    sleep 0.01
done
wait "$pid"
rc=$?
cat "$OUT/stop.log"
[ $rc -eq 75 ] || fail "the stopped run exited with $rc, expected 75"
grep -q "stopped on SIG$SIG" "$OUT/stop.log" || fail "no 'stopped on SIG$SIG' message"

case $WHAT in
finetune)
    [ ! -e "$OUT/stop/tiny/task_vectors_attn.h5" ] || fail "fine-tuning finished before the signal"
    ls -l "$OUT/stop/tiny/ckpt" || fail "no checkpoint written on the stop" ;;
search)
    n=$(cat "$OUT/stop/tiny/search/"*.jsonl | grep -c '"item"')
    echo "$n items in the journals at the stop"
    [ "$n" -lt 820 ] || fail "the search finished before the signal" ;;
coef)
    ls "$OUT/stop/tiny/search/"adamerging_*.json || fail "no AdaMerging checkpoint on the stop" ;;
esac

echo "== rerun"
"$MPIEXEC" -np 2 --oversubscribe "$TADIST" $(args "$OUT/stop") > "$OUT/rerun.log" 2>&1 ||
    { cat "$OUT/rerun.log"; fail "rerun failed"; }
cat "$OUT/rerun.log"
case $WHAT in
finetune)
    for task in quad stripes; do
        st=$(sed -n "s|.*attn/$task: resuming from checkpoint at step \([0-9]*\).*|\1|p" "$OUT/rerun.log")
        [ -n "$st" ] && [ "$st" -ge 100 ] && [ "$st" -lt 600 ] || fail "$task did not resume (step '$st')"
    done
    "$TF" same "$OUT/ref/tiny/task_vectors_attn.h5" "$OUT/stop/tiny/task_vectors_attn.h5" 0 || exit 1
    "$TF" same_heads "$OUT/ref/tiny/heads_attn.h5" "$OUT/stop/tiny/heads_attn.h5" 0 || exit 1 ;;
search)
    grep -q 'items already done, resuming' "$OUT/rerun.log" || fail "the rerun did not resume"
    "$TS" same-search "$OUT/ref/tiny" "$OUT/stop/tiny" attn ntk || exit 1 ;;
coef)
    grep -q 'adamerging attn/sum/task: resuming at step' "$OUT/rerun.log" || fail "AdaMerging did not resume"
    for s in adamerging_task cmaes_task; do
        "$TL" same-coef "$OUT/ref/tiny" "$OUT/stop/tiny" attn sum $s > /dev/null ||
            fail "$s differs from the uninterrupted run"
    done ;;
esac
echo "stopped with SIG$SIG (exit 75), resumed to the uninterrupted result"
