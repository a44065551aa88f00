#!/usr/bin/env bash
# The embedded study: installs what is missing, builds, builds the task suite
# (cached, as jobs/demo.sh), and runs config/study.cfg on 8 ranks:
#   mpirun -np 8 tadist config/study.cfg
# 36 runs (mode x learning rate x seed); about 1.5 hours on 2 cores. Killed, it
# resumes where it stopped when started again. Report: runs/study/study.md.
# Extra arguments go to tadist (e.g. --set sweep.ranks_per_run=2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/setup.sh
bash jobs/build.sh
source jobs/env.sh
ranks=${TADIST_RANKS:-8}
if [ ! -f data/suite/suite.txt ] || [ ! -f data/suite/pretrain.h5 ]; then
    bash jobs/fetch_mnist.sh
    mpirun -np 2 --oversubscribe ./build/tadist data suite --out data/suite
fi
mpirun -np "$ranks" --oversubscribe ./build/tadist config/study.cfg "$@"
