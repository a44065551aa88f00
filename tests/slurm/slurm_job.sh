#!/bin/sh
# The project's batch script under a real Slurm (tests/slurm.cmake): one node
# on localhost started by jobs/slurm_local.sh (fixture slurm_start), sbatch
# jobs/slurm_vit.sbatch with the tiny test configuration on 2 ranks (srun
# --mpi=pmix starts them), wait for the job, check its output and results.
#   slurm_job.sh WHAT SRC TADIST TEST_FINETUNE TEST_SEARCH CFG DATA MODEL OUT [REF]
# WHAT:
#   job      an uninterrupted job: COMPLETED, exit 0, one MPI job of 2 ranks,
#            and its alpha grid and chosen alpha equal a serial recomputation
#            (test_search check-search)
#   mpirun   the tiny fine-tuning with TADIST_LAUNCH=mpirun: mpirun inside the
#            allocation instead of srun (the script's fallback): COMPLETED,
#            one MPI job of 2 ranks, task vectors and results.json written
#   requeue  the same job as WHAT=job, stopped twice and requeued by the batch script:
#            first SIGUSR1 to the batch shell alone in the middle of
#            fine-tuning (what --signal=B:USR1@T sends before the time limit;
#            sent here with scancel --batch at a known moment, since Slurm's
#            own timing of that warning has a 30-60 s granularity), then
#            SIGTERM to the ranks in the middle of the alpha search (scancel
#            --signal=TERM, as at pre-emption); the job must end COMPLETED
#            after 2 restarts, each run resuming from what the last one
#            wrote, with task vectors and search results identical to the
#            uninterrupted job's (REF, the run directory of WHAT=job)
# Exit 77 (skipped) when Slurm is not installed.
set -u
WHAT=$1 SRC=$2 TADIST=$3 TF=$4 TS=$5 CFG=$6 DATA=$7 MODEL=$8 OUT=$9
shift 9
REF=${1:-}
fail() { echo "FAIL: $*"; [ -z "${jid:-}" ] || scancel "$jid" 2> /dev/null; exit 1; }
PATH=$PATH:/usr/sbin
command -v sbatch > /dev/null 2>&1 || { echo "Slurm is not installed (bash jobs/setup.sh)"; exit 77; }
SLURM_CONF=$(bash "$SRC/jobs/slurm_local.sh" conf)
export SLURM_CONF
scontrol ping | grep -q 'is UP' || fail "no Slurm controller (fixture slurm_start: jobs/slurm_local.sh start)"

rm -rf "$OUT" && mkdir -p "$OUT" || fail "cannot create $OUT"
log=$OUT/job.out
# sbatch's options override the script's #SBATCH lines (2 nodes x 4 ranks,
# 24 h, SIGUSR1 600 s before the limit: with 5 minutes, at once)
cd "$SRC" || fail "no $SRC"
if [ "$WHAT" = mpirun ]; then # the tiny run as it is (12 steps, fine-tuning only)
    set -- --set finetune.modes=attn
    launch=mpirun
else
    set -- --set run.stages=finetune,single,addition --set finetune.modes=attn \
        --set finetune.steps=600 --set finetune.log_every=50 --set finetune.checkpoint_every=0 \
        --set merge.methods=sum --set merge.alpha.step=0.005
    launch=srun
fi
jid=$(sbatch --parsable --job-name="tadist-test-$WHAT" --nodes=1 --ntasks=2 --ntasks-per-node=2 \
    --cpus-per-task=1 --mem=0 --time=5 --signal=B:USR1@10 --output="$log" \
    --export="ALL,TADIST=$TADIST,TADIST_LAUNCH=$launch" jobs/slurm_vit.sbatch "$CFG" \
    --set "data.dir=$DATA" --set "model.path=$MODEL" --set "run.out_dir=$OUT" "$@") ||
    fail "sbatch failed"
echo "job $jid submitted"

field() { scontrol -o show job "$jid" 2> /dev/null | tr ' ' '\n' | sed -n "s/^$1=//p"; }
# wait_until CMD...: poll (every 0.1 s, up to 150 s) until CMD succeeds while the job lives
wait_until() {
    i=0
    until "$@"; do
        i=$((i + 1))
        [ $i -le 1500 ] || { cat "$log"; fail "gave up waiting for: $*"; }
        case $(field JobState) in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | "")
            cat "$log"; fail "job ended ($(field JobState)) while waiting for: $*" ;;
        esac
        sleep 0.1
    done
}
in_log() { [ "$(grep -c "$1" "$log" 2> /dev/null)" -ge "${2:-1}" ]; }
items() { cat "$OUT"/tiny/search/addition_*.jsonl 2> /dev/null | grep -c '"item"'; }

if [ "$WHAT" = requeue ]; then
    wait_until in_log 'step 100/600' 2
    echo "== run 1 at fine-tuning step 100: SIGUSR1 to the batch shell"
    scancel --batch --signal=USR1 "$jid" || fail "scancel --batch --signal=USR1 failed"
    wait_until in_log 'resuming from checkpoint at step' 2
    wait_until sh -c "[ \$(cat '$OUT'/tiny/search/addition_*.jsonl 2> /dev/null | grep -c item) -ge 100 ]"
    echo "== run 2 after $(items) alpha-grid items: SIGTERM to the ranks"
    scancel --signal=TERM "$jid" || fail "scancel --signal=TERM failed"
fi
i=0 # the job's end, up to 150 s
while :; do
    st=$(field JobState)
    case $st in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) break ;;
    esac
    i=$((i + 1))
    [ $i -le 1500 ] || { cat "$log"; fail "job $jid not finished after 150 s (state $st)"; }
    sleep 0.1
done
cat "$log"
scontrol -o show job "$jid" | tr ' ' '\n' | grep -E '^(JobState|ExitCode|Restarts|RunTime)='
[ "$st" = COMPLETED ] || fail "job $jid ended $st"
[ "$(field ExitCode)" = 0:0 ] || fail "job exit code $(field ExitCode)"
in_log '2 rank(s), 2 per node' || fail "not one MPI job of 2 ranks"
in_log 'task vectors (attn)' || fail "no task vectors"
[ "$WHAT" = mpirun ] || grep -q '"addition"' "$OUT/tiny/results.json" ||
    fail "no addition results in results.json"

case $WHAT in
mpirun)
    [ -s "$OUT/tiny/results.json" ] || fail "no results.json"
    in_log '^srun' && fail "srun ran: TADIST_LAUNCH=mpirun ignored" ;;
job)
    [ "$(field Restarts)" = 0 ] || fail "the uninterrupted job was restarted"
    "$TS" check-search "$OUT/tiny" "$DATA" "$MODEL" attn sum 0 1 0.005 0 || exit 1 ;;
requeue)
    [ "$(field Restarts)" = 2 ] || fail "job restarted $(field Restarts) times, expected 2"
    in_log 'stopped on SIGUSR1 while fine-tuning' || fail "run 1 did not stop on SIGUSR1"
    in_log 'stopped on SIGTERM in the search' || fail "run 2 did not stop on SIGTERM in the search"
    in_log 'requeueing job' 2 || fail "the batch script did not requeue twice"
    in_log 'run 3 on' || fail "no third run"
    in_log 'items already done, resuming' || fail "the search did not resume from its journal"
    "$TF" same "$REF/tiny/task_vectors_attn.h5" "$OUT/tiny/task_vectors_attn.h5" 0 || exit 1
    "$TS" same-search "$REF/tiny" "$OUT/tiny" attn || exit 1 ;;
esac
echo "slurm $WHAT: job $jid passed"
