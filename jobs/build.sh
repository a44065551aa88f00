#!/usr/bin/env bash
# Configures and builds tadist into build/ (Release): every target, or the
# ones named (jobs/build.sh tadist: the program alone, as the demo needs).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build build -j"$(nproc)" "${targets[@]}"
