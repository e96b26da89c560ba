#!/bin/bash
# Instructions per unit of work, per JavaScript function (load-immune; perf-limits.md §7).
#
#   scripts/ir-per-function.sh SCRIPT ARG1 ARG2 [ARG4]
#
# Runs `node SCRIPT ARG1 ARG2 N ARG4` under valgrind --tool=callgrind for N = 2000 and 6000 with
# --perf-basic-prof (V8 writes /tmp/perf-PID.map naming its JIT code), attributes every instruction
# to the JS function whose code contains it, and prints (Ir(6000) - Ir(2000)) / (4000 * 64) per
# function: instructions per chain for dist/bench/queue-fixed-main.js (64 chains per batch), e.g.
#
#   npm run build && scripts/ir-per-function.sh dist/bench/queue-fixed-main.js split 1 visit
#
# "(native)" lines are start-up noise that does not cancel exactly (perf-map writing); read the JS ones.
set -euo pipefail
script=$(realpath "$1"); a=$2; b=$3; c=${4:-}
out=$(mktemp -d /tmp/vk-irfn.XXXXXX)
trap 'rm -rf "$out"' EXIT
for n in 2000 6000; do
  (cd "$out" && valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$out/cg.$n" \
    node --single-threaded --perf-basic-prof "$script" "$a" "$b" "$n" $c >/dev/null 2>"$out/err.$n") || { cat "$out/err.$n" >&2; exit 1; }
  pid=$(sed -n 's/^pid: //p' "$out/cg.$n" | head -1)
  mv "/tmp/perf-$pid.map" "$out/map.$n"
done
python3 "$(dirname "$0")/ir-per-function.py" "$out" $((4000 * 64))
