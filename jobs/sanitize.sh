#!/usr/bin/env bash
# Builds tadist with AddressSanitizer and UndefinedBehaviorSanitizer
# (-DTADIST_SANITIZE=ON) into build-asan, or the folder given, and runs the
# unit tests and the single-rank command tests under them: every test not
# labelled multirank (tests/CMakeLists.txt), then the multirank tests of the
# linear surrogate and the coefficient searches (MULTIRANK below: the code
# whose buffers depend on the rank count; one overflowed once, found only by
# a demo run; about 4 minutes here). Fails when a test fails or a
# sanitizer reports anything (out-of-bounds access, use after free, undefined
# behaviour, a leak), in any process a test starts: every report is written
# to BUILD_DIR/sanitizer-reports/ (log_path), so one from a command whose
# output a test swallows, or from a test that expects a non-zero exit, still
# fails the job; the reports are printed at the end. Leaks inside Open MPI
# and the other libraries tadist uses are suppressed by
# tests/sanitize/lsan.supp; tadist's own never are.
# Needs nothing beyond jobs/setup.sh's packages: gcc's ASan and UBSan
# runtimes come with build-essential (gcc-12: libasan8, libubsan1).
#   bash jobs/sanitize.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build-asan}
bash jobs/setup.sh
start=$SECONDS
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTADIST_SANITIZE=ON >/dev/null
cmake --build "$dir" -j2
built=$SECONDS
source jobs/env.sh
reports=$PWD/$dir/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_odr_violation=0:fast_unwind_on_malloc=0:log_path=$reports/asan:log_exe_name=1
export LSAN_OPTIONS=suppressions=$PWD/tests/sanitize/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan:log_exe_name=1
rc=0
ctest --test-dir "$dir" --output-on-failure -j2 --timeout 1200 -LE multirank || rc=$?
MULTIRANK='co_surrogate_np1_np2|co_sur_|co_bb_ntk|se_negation'
ctest --test-dir "$dir" --output-on-failure -j2 --timeout 1200 -L multirank -R "$MULTIRANK" || rc=$?
found=$(find "$reports" -type f | sort)
if [[ -n $found ]]; then
  for f in $found; do
    echo "==== sanitizer report $f"
    cat "$f"
  done
  echo "sanitize: $(wc -l <<<"$found") sanitizer report(s) above (in $reports)" >&2
  rc=1
fi
echo "sanitize: build $((built - start)) s, tests $((SECONDS - built)) s, $([[ $rc == 0 ]] && echo passed || echo FAILED)"
exit $rc
