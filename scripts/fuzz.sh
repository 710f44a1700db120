#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers of input someone else wrote (fuzz/, docs/reliability.md).
#
#   scripts/fuzz.sh [--minutes N] [target...]
#
# Runs each target (all of them when none is named) for N minutes (default 10) with AFL++
# through cargo-afl, one after the other and one fuzzer process at a time, at the lowest CPU
# priority. Installs cargo-afl and builds AFL++ when missing. Seeds come from the fixtures and
# the nvidia-smi captures in the shared folder ($ODIN_SHARED_DIR, else ../shared); corpora and
# findings stay in fuzz/work/ (ignored by git) and a later run resumes them. Prints one line
# per target (executions, execs/s, edges, crashes, hangs), appends it to
# fuzz/work/results.tsv, replays every crash and hang found so far without AFL++, and exits 1
# if one of them still fails (panics, or takes over a second) with the code as it is now.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=10
targets=()
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --minutes=*) minutes=${1#*=}; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(nvidia_smi_csv nvidia_smi_q proc_net sysfs_attr transcript terminal_capture hid_report
     hid_replay proc_pid)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target $t (${all[*]})" >&2; exit 2; }
done

# cargo-afl, and the AFL++ it builds for this toolchain (its own copy, not Debian's afl++:
# the runtime linked into the targets must match the fuzzer).
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo afl --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-afl"
  nice -n 19 cargo install cargo-afl --locked
fi
if ! built=$(nice -n 19 cargo afl config --build 2>&1); then
  grep -q "already built" <<<"$built" || { echo "$built" >&2; echo "fuzz.sh: building AFL++ failed" >&2; exit 1; }
fi

cd fuzz
echo "fuzz.sh: building the targets"
# Not --locked: the exporters' dependencies move with the workspace, and fuzz/Cargo.lock follows.
nice -n 19 cargo afl build --release
work=$PWD/work
mkdir -p "$work"
rm -rf "$work/seeds"
./target/release/seeds "$work/seeds"

export AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_UI=1 AFL_QUIET=1
# The targets write their scratch trees under TMPDIR; one folder per run, removed after it.
export TMPDIR="$work/tmp"

stat_of() { awk -F' *: *' -v k="$1" '$1 == k {print $2}' "$2/default/fuzzer_stats"; }

found=0
[ -f "$work/results.tsv" ] ||
  printf 'date\ttarget\tseconds\texecs\texecs_per_sec\tedges\tbitmap_cvg\tcorpus\tcrashes\thangs\n' \
    >"$work/results.tsv"
for t in "${targets[@]}"; do
  out="$work/out/$t"
  input="$work/seeds/$t"
  # A corpus from an earlier run is resumed (AFL++ reads it back from the output folder).
  [ -f "$out/default/fuzzer_stats" ] && input=-
  rm -rf "$TMPDIR"; mkdir -p "$TMPDIR" "$work/out"
  echo "fuzz.sh: $t for $minutes min"
  before=$( [ -f "$out/default/fuzzer_stats" ] && stat_of execs_done "$out" || echo 0)
  AFL_AUTORESUME=1 nice -n 19 cargo afl fuzz -i "$input" -o "$out" -V $((minutes * 60)) \
    -t 1000 -m 2048 "./target/release/$t" >"$work/$t.log" 2>&1 || {
      echo "fuzz.sh: afl-fuzz failed for $t; the end of $work/$t.log:"; tail -20 "$work/$t.log"
      found=1; continue; }
  rm -rf "$TMPDIR"
  execs=$(( $(stat_of execs_done "$out") - before ))
  # A resumed run moves earlier findings to crashes.<time> and hangs.<time>: count both.
  crashes=$(ls "$out/default/crashes" 2>/dev/null | grep -c '^id:' || true)
  hangs=$(ls "$out/default/hangs" 2>/dev/null | grep -c '^id:' || true)
  earlier=$(find "$out/default" -path '*/crashes.*/id:*' -o -path '*/hangs.*/id:*' | wc -l)
  line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$(date -u +%FT%TZ)" "$t" \
    $((minutes * 60)) "$execs" "$(stat_of execs_per_sec "$out")" \
    "$(stat_of edges_found "$out")" "$(stat_of bitmap_cvg "$out")" \
    "$(stat_of corpus_count "$out")" "$crashes" "$hangs")
  echo "$line" >>"$work/results.tsv"
  # afl-fuzz's log: only its end is worth keeping.
  tail -n 200 "$work/$t.log" >"$work/$t.log.tail" && mv "$work/$t.log.tail" "$work/$t.log"
  echo "fuzz.sh: $t: $execs executions, $(stat_of execs_per_sec "$out") execs/s (last)," \
    "$(stat_of edges_found "$out") edges, $crashes crashes, $hangs hangs in this run," \
    "$earlier from earlier runs"
  # Findings are kept across runs; what counts is whether they still fail with the code as it
  # is now (a fixed crash stays in its folder as a record, and replays clean).
  if [ $((crashes + hangs + earlier)) -gt 0 ]; then
    ./target/release/check "$t" "$out"/default/crashes* "$out"/default/hangs* || found=1
  fi
done
echo "fuzz.sh: results in fuzz/work/results.tsv"
exit $found
