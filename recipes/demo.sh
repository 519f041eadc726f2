#!/usr/bin/env bash
# The embedded demo, from a fresh clone: installs keras_tips, trains the
# tiny_shapes recipe on the generated shapes dataset, evaluates it, writes the
# results table and pictures under runs/demo, reloads the exported preset and
# prints a zero-shot prediction. Extra arguments go to `keras-tips demo`
# (e.g. --set train.total_steps=200 for a quicker run).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" -e ".[test]"
export TF_CPP_MIN_LOG_LEVEL=3
export KERAS_BACKEND="${KERAS_BACKEND:-jax}"
keras-tips demo --output runs/demo "$@"
echo "Results: runs/demo/results.md; pictures: runs/demo/pictures/; preset: runs/demo/preset"
