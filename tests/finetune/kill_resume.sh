#!/bin/sh
# Kill test of fine-tuning resume (tests/finetune.cmake, ft_kill_resume):
# a 2-rank run (attn, trained heads, a checkpoint every 2 steps) is killed with
# SIGKILL once both tasks have a checkpoint, rerun to completion, and its task
# vectors and trained heads compared with an uninterrupted run's.
#   kill_resume.sh MPIEXEC TADIST TEST_FINETUNE CFG DATA_DIR MODEL OUT_DIR
set -u
MPIEXEC=$1 TADIST=$2 TF=$3 CFG=$4 DATA=$5 MODEL=$6 OUT=$7
STEPS=400
fail() { echo "FAIL: $*"; exit 1; }
. "$(dirname "$0")/../kill_session.sh"
run() { # out_dir: a 2-rank run in the foreground
    "$MPIEXEC" -np 2 --oversubscribe "$TADIST" "$CFG" --set "data.dir=$DATA" \
        --set "model.path=$MODEL" --set "run.out_dir=$1" --set finetune.modes=attn \
        --set finetune.steps=$STEPS --set finetune.checkpoint_every=2 \
        --set finetune.log_every=100 --set finetune.train_heads=true
}
rm -rf "$OUT" && mkdir -p "$OUT" || fail "cannot create $OUT"

echo "== uninterrupted run"
run "$OUT/ref" > "$OUT/ref.log" 2>&1 || { cat "$OUT/ref.log"; fail "uninterrupted run failed"; }

echo "== run to be killed (own session, so that every rank can be killed)"
start_session "$OUT/kill.log" "$MPIEXEC" -np 2 --oversubscribe "$TADIST" "$CFG" \
    --set "data.dir=$DATA" --set "model.path=$MODEL" --set "run.out_dir=$OUT/kill" \
    --set finetune.modes=attn --set finetune.steps=$STEPS --set finetune.checkpoint_every=2 \
    --set finetune.log_every=100 --set finetune.train_heads=true
ck="$OUT/kill/tiny/ckpt"
i=0 # poll up to 120 s for a checkpoint of both tasks
while [ ! -e "$ck/attn_quad.h5" ] || [ ! -e "$ck/attn_stripes.h5" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$OUT/kill.log"; fail "the run ended before a checkpoint"; }
    i=$((i + 1))
    [ $i -le 2400 ] || { pkill -KILL -s "$sid"; fail "no checkpoint after 120 s"; }
    sleep 0.05
done
kill_session
cat "$OUT/kill.log"
ls -l "$ck"
[ ! -e "$OUT/kill/tiny/task_vectors_attn.h5" ] ||
    fail "the run finished before the kill (raise STEPS in $0)"

echo "== rerun"
run "$OUT/kill" > "$OUT/rerun.log" 2>&1 || { cat "$OUT/rerun.log"; fail "rerun failed"; }
cat "$OUT/rerun.log"
for task in quad stripes; do
    st=$(sed -n "s|.*attn/$task: resuming from checkpoint at step \([0-9]*\).*|\1|p" "$OUT/rerun.log")
    [ -n "$st" ] && [ "$st" -gt 0 ] && [ "$st" -lt $STEPS ] || fail "$task did not resume (step '$st')"
    echo "$task resumed at step $st of $STEPS"
done
"$TF" same "$OUT/ref/tiny/task_vectors_attn.h5" "$OUT/kill/tiny/task_vectors_attn.h5" 1e-6 || exit 1
"$TF" same_heads "$OUT/ref/tiny/heads_attn.h5" "$OUT/kill/tiny/heads_attn.h5" 1e-6 || exit 1
echo "killed run resumed to the uninterrupted result"
