#!/usr/bin/env bash
# Engine benchmark: tadist against PyTorch (Debian's python3-torch, CPU) on the
# same architecture, batch, OPENBLAS_CORETYPE and thread count, in one run.
#   bash jobs/bench.sh [THREADS]      (default 2; needs `bash jobs/setup.sh --bench`)
# Prints both programs' rows (medians of per-iteration times) and a ratio
# table; the README's engine table comes from this script.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
source jobs/env.sh
# One core type for both programs (tadist would pick SkylakeX/Haswell itself).
if [[ -z "${OPENBLAS_CORETYPE:-}" ]]; then
  if grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -q avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell; fi
fi
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads TADIST_BLAS_THREADS=$threads
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, $threads thread(s), $(nproc) cores"
# Rows: architecture, batch, timed iterations (each program reports medians).
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for row in "vit_b32 16 5" "vit_small28 64 21"; do
  set -- $row
  ./build/tadist bench --arch "$1" --batch "$2" --iters "$3" --warmup 1 | grep -v '^\[' | tee -a "$out"
  /usr/bin/python3 jobs/bench_torch.py --arch "$1" --batch "$2" --threads "$threads" --iters "$3" --warmup 1 | tee -a "$out"
done
# tadist / PyTorch per row, from the medians above
echo
echo "| model, batch | row | tadist img/s | PyTorch img/s | ratio |"
echo "|---|---|---|---|---|"
awk '/ img\/s / {
       split($0, h, ":"); split(h[1], w, " "); key = w[2] ", " w[4];
       split(h[2], v, " ");
       if (v[2] == "step") { row = v[1] " step"; val = v[3] } else { row = v[1]; val = v[2] }
       if (w[1] == "tadist") t[key SUBSEP row] = val; else p[key SUBSEP row] = val;
       if (!(key SUBSEP row in seen)) { seen[key SUBSEP row] = 1; order[++k] = key SUBSEP row } }
     END { for (i = 1; i <= k; i++) { split(order[i], kr, SUBSEP);
             printf "| %s | %s | %s | %s | %.2fx |\n", kr[1], kr[2], t[order[i]], p[order[i]], t[order[i]] / p[order[i]] } }' "$out"
