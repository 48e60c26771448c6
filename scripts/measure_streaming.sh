#!/usr/bin/env bash
# Peak memory of a per-sample run over many samples streamed to a .npy file (about 41 KB of
# output per sample: 20000 samples write 820 MB). Needs GNU time (/usr/bin/time, Debian: time).
# Usage: scripts/measure_streaming.sh [SAMPLES] [BACKEND] [METHOD]
set -euo pipefail
cd "$(dirname "$0")/.."
samples=${1:-20000}
backend=${2:-flex}
method=${3:-analytic}
bin=target/release/lenet-jacobian
[ -x "$bin" ] || cargo build --release
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
/usr/bin/time -f 'peak RSS %M KiB, wall %e s' "$bin" --backend "$backend" --method "$method" \
  --layout per-sample --batch "$samples" --output "$out/j.npy" | grep -E '^(shape|computed)'
ls -l "$out/j.npy" | awk '{print "output", $5, "bytes"}'
