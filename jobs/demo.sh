#!/usr/bin/env bash
# README command (1): installs what is missing, builds, builds the embedded task
# suite (cached in data/suite), and runs the main job on 8 ranks:
#   mpirun -np 8 tadist config/demo.cfg
# Extra arguments go to tadist (e.g. --set finetune.steps=100).
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/setup.sh
bash jobs/build.sh
source jobs/env.sh
ranks=${TADIST_RANKS:-8}
mpirun -np "$ranks" --oversubscribe ./build/tadist config/demo.cfg "$@"
