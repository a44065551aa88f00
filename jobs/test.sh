#!/usr/bin/env bash
# README command (2): installs what is missing, builds, runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash jobs/setup.sh
bash jobs/build.sh
source jobs/env.sh
ctest --test-dir build --output-on-failure -j2 --timeout 600
