#!/usr/bin/env bash
# Recreates the demo's pre-trained encoder, models/demo_vit.h5, which ships in
# the repository so that the demo does not pre-train (README, "The demo's
# pre-trained encoder"). It runs only the pretrain stage of config/demo.cfg on
# 8 ranks (seed 0, 1000 steps of batch 128: about 3 minutes on 2 cores) into
#   OUT (default models/demo_vit.recreated.h5)
# and compares the new file's parameter checksum with the shipped one's.
# Pre-training is deterministic for a given rank count and BLAS kernel: on the
# 2-core AMD EPYC machines (OPENBLAS_CORETYPE=Haswell) every recreation gave
# the shipped checksum. Another kernel sums in another order and may differ in
# the last bits; the script says so and exits 3. To replace the shipped model,
# move OUT onto models/demo_vit.h5.
#   bash jobs/pretrain_demo.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/demo_vit.recreated.h5}
bash jobs/setup.sh
bash jobs/build.sh tadist
source jobs/env.sh
if [ ! -f data/suite/pretrain.h5 ]; then
    bash jobs/fetch_mnist.sh
    mpirun -np 2 --oversubscribe ./build/tadist data suite --out data/suite
fi
if [ -e "$out" ]; then
    echo "pretrain_demo: $out exists; remove it first (the pretrain stage would reuse it)" >&2
    exit 2
fi
mpirun -np 8 --oversubscribe ./build/tadist config/demo.cfg --set run.stages=pretrain \
    --set model.path="$out" --set run.out_dir=runs/pretrain_demo
checksum() { h5dump -a checksum "$1" | sed -n 's/.*(0): "\(.*\)".*/\1/p'; }
new=$(checksum "$out")
if [ ! -f models/demo_vit.h5 ]; then
    echo "pretrain_demo: wrote $out (checksum $new); no shipped model to compare with"
    exit 0
fi
old=$(checksum models/demo_vit.h5)
if [ "$new" = "$old" ]; then
    echo "pretrain_demo: $out has the shipped model's checksum $old: recreated exactly"
else
    echo "pretrain_demo: $out has checksum $new, the shipped model $old" \
         "(another BLAS kernel, rank count or code version sums in another order)" >&2
    exit 3
fi
