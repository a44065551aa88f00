#!/usr/bin/env bash
# Engine benchmark: tadist against PyTorch (Debian's python3-torch, CPU) on the
# same architecture, batch, OPENBLAS_CORETYPE and thread count, in one run.
#   bash jobs/bench.sh [THREADS]      (default 2; needs `bash jobs/setup.sh --bench`)
# Prints both tables; the README's engine table comes from this script.
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
for row in "vit_b32 16" "vit_small28 64"; do
  set -- $row
  ./build/tadist bench --arch "$1" --batch "$2" --iters 3 --warmup 1 | grep -v '^\['
  /usr/bin/python3 jobs/bench_torch.py --arch "$1" --batch "$2" --threads "$threads" --iters 3 --warmup 1
done
