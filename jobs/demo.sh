#!/usr/bin/env bash
# README command (1): installs what is missing, builds, builds the embedded task
# suite (cached in data/suite: fetched MNIST in data/cache, then
# `tadist data suite`), and runs the main job on 8 ranks:
#   mpirun -np 8 tadist config/demo.cfg
# The job pre-trains its own encoder first (models/demo_vit.h5, cached: delete
# it to pre-train again).
# Extra arguments go to tadist (e.g. --set finetune.steps=100).
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
mpirun -np "$ranks" --oversubscribe ./build/tadist config/demo.cfg "$@"
