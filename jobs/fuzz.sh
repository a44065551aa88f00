#!/usr/bin/env bash
# Fuzzes every harness of tests/fuzz with libFuzzer, ASan and UBSan.
#   bash jobs/fuzz.sh [SECONDS]     (default 60 seconds per harness)
# Builds with clang into build-fuzz-clang (-DTADIST_FUZZ=ON: tadist's code
# instrumented with -fsanitize=fuzzer-no-link,address,undefined, the harnesses
# linked with libFuzzer), then runs each harness for SECONDS on a scratch copy
# of its seed corpus (tests/fuzz/<kind>/corpus and regressions/; the tree is
# never modified) and prints executions, coverage (cov/ft of libFuzzer's
# final stats) and whether it crashed. A crashing input is left in the scratch
# folder (printed); save it under tests/fuzz/<kind>/crashes-found/.
# Exit status: non-zero when any harness crashed (or the build failed).
# Needs clang and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes):
# `bash jobs/setup.sh --fuzz` installs them.
# Environment: FUZZ_ONLY="kind ..." to run a subset, FUZZ_JOBS (default 1)
# harnesses at a time, FUZZ_BUILD (default build-fuzz-clang), CC (default clang).
set -uo pipefail
cd "$(dirname "$0")/.."
source jobs/env.sh
SECONDS_EACH=${1:-60}
BUILD=${FUZZ_BUILD:-build-fuzz-clang}
CC=${CC:-clang}
JOBS=${FUZZ_JOBS:-1}
KINDS=${FUZZ_ONLY:-"safetensors idx mnist_json image model_h5 task_h5 clip_tokenizer config"}

if ! command -v "$CC" >/dev/null 2>&1; then
  echo "fuzz: $CC not found (Debian packages clang, libclang-rt-14-dev)" >&2
  exit 2
fi
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g" -DCMAKE_C_FLAGS="$SAN" -DTADIST_FUZZ=ON \
      -DTADIST_NATIVE=OFF >"$BUILD/fuzz-configure.log" 2>&1 \
  || { cat "$BUILD/fuzz-configure.log" >&2; echo "fuzz: cmake failed" >&2; exit 2; }
targets=()
for k in $KINDS; do targets+=("fuzz_$k"); done
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}" >"$BUILD/fuzz-build.log" 2>&1 \
  || { tail -40 "$BUILD/fuzz-build.log" >&2; echo "fuzz: build failed ($BUILD/fuzz-build.log)" >&2; exit 2; }

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/tadist-fuzz-run.XXXXXX")
export TADIST_QUIET=1 TADIST_BLAS_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Open MPI plugins stay loaded, so that what they keep is attributed (and suppressed)
export OMPI_MCA_mca_base_component_disable_dlclose=1
# libFuzzer still checks each input for leaks; at exit only MPI start-up remains
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0:leak_check_at_exit=0}

run_one() {
  local k=$1 dir=$SCRATCH/$1
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp tests/fuzz/"$k"/corpus/* "$dir/corpus/" 2>/dev/null
  [[ -d tests/fuzz/$k/regressions ]] && cp tests/fuzz/"$k"/regressions/* "$dir/corpus/" 2>/dev/null
  # -rss_limit_mb/-malloc_limit_mb: inputs that claim huge sizes must fail cleanly, not allocate them
  (cd "$dir" && TMPDIR="$dir" "$OLDPWD/$BUILD/tests/fuzz_$k" -max_total_time="$SECONDS_EACH" \
     -timeout=25 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
     -artifact_prefix="$dir/artifacts/" corpus >"$dir/log" 2>&1)
  echo $? >"$dir/rc"
}

pids=()
for k in $KINDS; do
  run_one "$k" &
  pids+=($!)
  if ((${#pids[@]} >= JOBS)); then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
wait

status=0
printf '%-16s %12s %8s %8s %8s  %s\n' harness executions cov ft corpus result
for k in $KINDS; do
  dir=$SCRATCH/$k
  rc=$(cat "$dir/rc" 2>/dev/null || echo 99)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/log" | grep -o '[0-9]*$' | tail -1)
  last=$(grep -E '^#[0-9]+.*(cov|ft):' "$dir/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*')
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*')
  corp=$(grep -o 'corp: [0-9]*' <<<"$last" | grep -o '[0-9]*')
  [[ -z $execs ]] && execs=$(grep -oE '^#[0-9]+' <<<"$last" | tr -d '#')
  arts=$(ls "$dir/artifacts" 2>/dev/null | tr '\n' ' ')
  if [[ $rc == 0 && -z $arts ]]; then
    result=ok
  else
    result="CRASHED (rc $rc) ${arts:+input $dir/artifacts/$arts}log $dir/log"
    status=1
  fi
  printf '%-16s %12s %8s %8s %8s  %s\n' "$k" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
if ((status)); then
  echo "fuzz: crashes found; inputs and logs under $SCRATCH (copy inputs to tests/fuzz/<kind>/crashes-found/)"
else
  rm -rf "$SCRATCH"
fi
exit $status
