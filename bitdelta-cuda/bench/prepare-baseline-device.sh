#!/usr/bin/env bash
# Prepares, on the build machine, an earlier commit's decoder step to time beside the present one in one lease of a
# GPU host (timings compare only within one run on one card): bitdelta-cuda/target/step-baseline/ (git-ignored, about
# 1 MB) with REV's sm_90a library (xz), its bitdelta-cuda classes and test classes as jars, and REVISION. Built in a
# temporary git worktree of REV, removed afterwards. REV's step ABI must match what its own jars bind (they travel
# together); the Java runtime and the other jars come from step-device.
# Usage (repository root): bash bitdelta-cuda/bench/prepare-baseline-device.sh REV [FOLDER]
# (FOLDER: default bitdelta-cuda/target/step-baseline; more builds: bitdelta-cuda/target/step-baseline-NAME)
# then carry step-device and every such folder: ["bitdelta-cuda/target/step-device", "bitdelta-cuda/target/step-baseline"] and run
#   OUT=$OUT bash bitdelta-cuda/bench/compare-step-device.sh [StepBenchmark arguments]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../tools/device-carry.sh"  # root, start_carry, pack_cuda_jars
rev=$(git rev-parse --verify "${1:?usage: prepare-baseline-device.sh REV}^{commit}")
dest=${2:-bitdelta-cuda/target/step-baseline}
[[ $(basename "$dest") == step-baseline* && $(basename "$dest") != step-baseline-carry ]] \
  || { echo "prepare-baseline-device: FOLDER must be named step-baseline or step-baseline-NAME (not step-baseline-carry)" >&2; exit 1; }
start_carry prepare-baseline-device "$dest"
tree=$(mktemp -d)/tree
git worktree add --quiet --detach "$tree" "$rev"
trap 'git worktree remove --force "$tree"; git worktree prune' EXIT
(
  cd "$tree"
  JOBS="${JOBS:-2}" bash bitdelta-cuda/bench/build.sh --sm90-only --lib-only > build.log 2>&1 || { tail -20 build.log; exit 1; }
  mvn -B -q -o test-compile -pl bitdelta-cuda -am -Dexec.skip=true
)
xz -T2 -6 -c "$tree/bitdelta-cuda/target/native-sm90/libbitdelta_cuda.so" > "$dest/libbitdelta_cuda.so.xz"
pack_cuda_jars "$tree" "$dest/jars"
echo "$rev $(git log -1 --format=%s "$rev" | cut -c1-100)" > "$dest/REVISION"
echo "prepare-baseline-device: $(du -sh "$dest" | cut -f1) in $dest ($(cut -c1-12 "$dest/REVISION"))"
