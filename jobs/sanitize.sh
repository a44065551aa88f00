#!/usr/bin/env bash
# Builds tadist with AddressSanitizer and UndefinedBehaviorSanitizer
# (-DTADIST_SANITIZE=ON) into build-asan, or the folder given, and runs the
# unit tests and the single-rank command tests under them: every test not
# labelled multirank (tests/CMakeLists.txt). Fails when a test fails or a
# sanitizer reports (out-of-bounds access, use after free, undefined
# behaviour, a leak). Leaks inside Open MPI and the other libraries tadist
# uses are suppressed by tests/sanitize/lsan.supp; tadist's own never are.
#   bash jobs/sanitize.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-asan}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTADIST_SANITIZE=ON >/dev/null
cmake --build "$dir" -j2
source jobs/env.sh
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_odr_violation=0:fast_unwind_on_malloc=0
export LSAN_OPTIONS=suppressions=$PWD/tests/sanitize/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$dir" --output-on-failure -j2 --timeout 1200 -LE multirank
