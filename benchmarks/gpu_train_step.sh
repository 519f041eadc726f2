#!/usr/bin/env bash
# The paper recipe's (B/14, mixed bfloat16) train step on this machine's
# GPU: rematerialisation off and on, several per-device batches, each in its
# own JAX process; images/s, peak device memory and MFU against the device's
# dense bf16 peak. Writes the Markdown table to $OUTPUT (default
# gpu_train_step.md) and prints it.
#
#   benchmarks/gpu_train_step.sh                  # batches 64 128 192 256
#   BATCHES="32 64" benchmarks/gpu_train_step.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3 PYTHONHASHSEED=0
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import jax; d = jax.devices()[0]; print(d.platform, d.device_kind)"
# shellcheck disable=SC2086
python benchmarks/train_step.py --accelerator \
    --batches ${BATCHES:-64 128 192 256} \
    --timeout "${WORKER_TIMEOUT:-900}" \
    --output "${OUTPUT:-gpu_train_step.md}" "$@"
