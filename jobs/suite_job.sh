#!/usr/bin/env bash
# Runs a configuration of the embedded suite on 8 ranks (TADIST_RANKS=N for
# another count): installs what is missing, builds, builds the embedded task
# suite the first time (data/suite: fetched MNIST in data/cache, then
# `tadist data suite`), then
#   mpirun -np 8 tadist CONFIG [ARGS...]
# jobs/demo.sh and jobs/study.sh call it.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=$1
shift
bash jobs/setup.sh
bash jobs/build.sh tadist
source jobs/env.sh
ranks=${TADIST_RANKS:-8}
if [ ! -f data/suite/suite.txt ] || [ ! -f data/suite/pretrain.h5 ] ||
       [ ! -f data/suite/scenes.h5 ]; then
    bash jobs/fetch_mnist.sh
    mpirun -np 2 --oversubscribe ./build/tadist data suite --out data/suite
fi
mpirun -np "$ranks" --oversubscribe ./build/tadist "$cfg" "$@"
