#!/usr/bin/env bash
# Engine benchmark: tadist against PyTorch (Debian's python3-torch, CPU) on the
# same architecture, batch, OPENBLAS_CORETYPE and thread count, in one run.
#   bash jobs/bench.sh [THREADS [CORETYPE]]   (default 2; needs `bash jobs/setup.sh --bench`)
# CORETYPE (an OpenBLAS kernel: SkylakeX, Haswell, ...) defaults to the
# environment's OPENBLAS_CORETYPE, else the best this CPU supports; it is set in
# the benchmark's own commands only. Prints the kernel each program ran, both
# programs' rows (medians of per-iteration times) and a ratio table; the
# README's engine table comes from this script.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-2}
source jobs/env.sh
# One core type for both programs (tadist would pick SkylakeX/Haswell itself).
core=${2:-${OPENBLAS_CORETYPE:-}}
if [[ -z "$core" ]]; then
  if grep -q avx512f /proc/cpuinfo; then core=SkylakeX
  elif grep -q avx2 /proc/cpuinfo; then core=Haswell; fi
fi
blas=(env)
[[ -n "$core" ]] && blas+=(OPENBLAS_CORETYPE="$core")
export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads TADIST_BLAS_THREADS=$threads
echo "OPENBLAS_CORETYPE=${core:-unset}, $threads thread(s), $(nproc) cores"
# The PyTorch peer, reporting the kernel its own OpenBLAS runs (its BLAS is
# the system's libblas.so.3, OpenBLAS when that is installed).
torch_peer() {
  "${blas[@]}" /usr/bin/python3 -c '
import ctypes, os, runpy, sys
import torch
core = "unknown (no OpenBLAS loaded)"
for lib in sorted({l.split()[-1] for l in open("/proc/self/maps") if "blas" in l.rsplit("/", 1)[-1]}):
    name = getattr(ctypes.CDLL(lib), "openblas_get_corename", None)
    if name:
        name.restype = ctypes.c_char_p
        core = name().decode()
        break
print("torch: BLAS core %s (OPENBLAS_CORETYPE=%s)" % (core, os.environ.get("OPENBLAS_CORETYPE", "unset")))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")' jobs/bench_torch.py "$@"
}
# Rows: architecture, batch, timed iterations (each program reports medians).
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for row in "vit_b32 16 5" "vit_small28 64 21"; do
  set -- $row
  # tadist's header line names its BLAS core
  "${blas[@]}" ./build/tadist bench --arch "$1" --batch "$2" --iters "$3" --warmup 1 | grep -v '^\[' | tee -a "$out"
  torch_peer --arch "$1" --batch "$2" --threads "$threads" --iters "$3" --warmup 1 | tee -a "$out"
done
# tadist / PyTorch per row, from the medians above
echo
echo "| model, batch | row | tadist img/s | PyTorch img/s | ratio |"
echo "|---|---|---|---|---|"
awk '/ img\/s / {
       split($0, h, ":"); split(h[1], w, " "); key = w[2] ", " w[4];
       split(h[2], v, " ");
       if (v[2] == "step" || v[2] == "bf16") { row = v[1] " " v[2]; val = v[3] } else { row = v[1]; val = v[2] }
       if (w[1] == "tadist") t[key SUBSEP row] = val; else p[key SUBSEP row] = val;
       if (!(key SUBSEP row in seen)) { seen[key SUBSEP row] = 1; order[++k] = key SUBSEP row } }
     END { for (i = 1; i <= k; i++) { split(order[i], kr, SUBSEP);
             if (order[i] in p) printf "| %s | %s | %s | %s | %.2fx |\n", kr[1], kr[2], t[order[i]], p[order[i]], t[order[i]] / p[order[i]];
             else printf "| %s | %s | %s | - | - |\n", kr[1], kr[2], t[order[i]] } }' "$out"
