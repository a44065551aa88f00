#!/usr/bin/env bash
# Search benchmark: the addition stage (alpha grid x val splits through the
# work pool, then test) at 1 and 2 ranks on the same task vectors, one BLAS
# thread per rank, and the speed-up of the search proper ("searched in Xs").
#   bash jobs/bench_search.sh [OUT_DIR]     (needs data/suite: bash jobs/demo.sh builds it)
# Env: TADIST_BIN (default build/tadist), LIMIT (images per split, default 300),
#      NPS (rank counts, default "1 2"). Run it on a quiet machine: the figure is
#      a ratio of two wall times and moves with anything else that runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source jobs/env.sh
BIN=${TADIST_BIN:-build/tadist}
OUT=${1:-/tmp/tadist_bench_search}
LIMIT=${LIMIT:-300}
NPS=${NPS:-"1 2"}
mkdir -p "$OUT"
SETS=(--set run.name=bench --set "run.out_dir=$OUT" --set "model.path=$OUT/theta0.h5"
      --set model.arch=vit_small28 --set model.random=true --set data.dir=data/suite
      --set data.tasks=mnist,fashion_mnist,letters,shapes --set heads.source=prototype
      --set finetune.modes=attn --set finetune.steps=20 --set finetune.batch=32
      --set finetune.warmup=2 --set "eval.limit=$LIMIT" --set eval.batch=64
      --set merge.methods=sum --set "negation.targets=[]" --set "disentangle.pairs=[]")
if [[ ! -e "$OUT/bench/task_vectors_attn.h5" ]]; then
  echo "fine-tuning the benchmark's task vectors (once) ..."
  mpirun -np 2 "$BIN" config/demo.cfg "${SETS[@]}" --set run.stages=finetune > "$OUT/finetune.log" 2>&1 \
    || { cat "$OUT/finetune.log"; exit 1; }
fi
declare -A search wall
for np in $NPS; do
  rm -rf "$OUT/bench/search"
  t0=$(date +%s.%N)
  TADIST_BLAS_THREADS=1 mpirun -np "$np" "$BIN" config/demo.cfg "${SETS[@]}" \
    --set run.stages=addition > "$OUT/addition_np$np.log" 2>&1 || { cat "$OUT/addition_np$np.log"; exit 1; }
  t1=$(date +%s.%N)
  wall[$np]=$(echo "$t1 - $t0" | bc -l)
  search[$np]=$(sed -n 's/.*searched in \([0-9.]*\)s.*/\1/p' "$OUT/addition_np$np.log" | head -1)
  printf "np %d: search %.2fs, whole addition stage %.2fs (wall, with start-up)\n" "$np" \
    "${search[$np]}" "${wall[$np]}"
  grep -E "addition attn/sum: [0-9]+ alphas|test abs" "$OUT/addition_np$np.log" | sed 's/^/    /'
done
set -- $NPS
printf "search speed-up %d -> %d ranks: %.2fx (whole stage %.2fx)\n" "$1" "$2" \
  "$(echo "${search[$1]} / ${search[$2]}" | bc -l)" "$(echo "${wall[$1]} / ${wall[$2]}" | bc -l)"
