#!/usr/bin/env bash
# Recreates a shipped pre-trained encoder (README, "The demo's pre-trained
# encoders"): it runs only the pretrain stage of CONFIG on 8 ranks into
#   OUT (default: the config's model.path with .recreated before .h5)
# and compares the new file's parameter checksums (the vision tower's, and the
# text tower's projection when there is one) with the shipped file's.
#   bash jobs/pretrain_demo.sh                     config/demo.cfg: models/demo_clip.h5
#                                                  (CLIP-style on the captioned scenes,
#                                                  8000 steps: about 21 minutes on 2 cores)
#   bash jobs/pretrain_demo.sh config/study.cfg    models/demo_vit.h5 (class labels,
#                                                  1000 steps: about 3 minutes)
#   bash jobs/pretrain_demo.sh CONFIG OUT
# Pre-training gives the same bits at any rank count and thread count for a
# given BLAS kernel (dist/stages/train_step.h): on the 2-core AMD EPYC machines
# (OPENBLAS_CORETYPE=Haswell) every recreation gave the shipped checksums.
# Another kernel sums in another order and may differ in the last bits; the
# script says so and exits 3. To replace the shipped model, move OUT onto it.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=${1:-config/demo.cfg}
bash jobs/setup.sh
bash jobs/build.sh tadist
source jobs/env.sh
value() { # SECTION KEY: an effective string value of $cfg
    ./build/tadist "$cfg" --print-config --check 2>/dev/null |
        awk -v s="$1" -v k="$2" '$1 == s && $2 == "=" {m = 1} m && !done && $1 == k {print; done = 1}' |
        sed 's/.*"\(.*\)".*/\1/'
}
shipped=$(value model path)
task=$(value pretrain task)
out=${2:-${shipped%.h5}.recreated.h5}
if [ ! -f "data/suite/$task.h5" ]; then
    bash jobs/fetch_mnist.sh
    mpirun -np 2 --oversubscribe ./build/tadist data suite --out data/suite
fi
if [ -e "$out" ]; then
    echo "pretrain_demo: $out exists; remove it first (the pretrain stage would reuse it)" >&2
    exit 2
fi
mpirun -np 8 --oversubscribe ./build/tadist "$cfg" --set run.stages=pretrain \
    --set model.path="$out" --set run.out_dir=runs/pretrain_demo
sums() { # the vision checksum, and an md5 of the text projection's values if any
    h5dump -a checksum "$1" | sed -n 's/.*(0): "\(.*\)".*/\1/p'
    if h5dump -n "$1" | grep '/text/text_projection' > /dev/null; then
        local tmp
        tmp=$(mktemp)
        h5dump -d /text/text_projection -b LE -o "$tmp" "$1" > /dev/null
        md5sum < "$tmp" | cut -c1-32
        rm -f "$tmp"
    fi
}
new=$(sums "$out" | tr '\n' ' ')
if [ ! -f "$shipped" ]; then
    echo "pretrain_demo: wrote $out (checksums $new); no shipped model to compare with"
    exit 0
fi
old=$(sums "$shipped" | tr '\n' ' ')
if [ "$new" = "$old" ]; then
    echo "pretrain_demo: $out has the shipped $shipped's checksums $old: recreated exactly"
else
    echo "pretrain_demo: $out has checksums $new, the shipped $shipped $old" \
         "(another BLAS kernel or code version sums in another order)" >&2
    exit 3
fi
