#!/usr/bin/env bash
# Installs keras_tips with its test dependencies and runs the test suite:
# everything on JAX, then the multi-backend tests again on TensorFlow and
# PyTorch, each backend in its own process (Keras fixes the backend at import).
#   bash tests/run_tests.sh            # fast tests
#   KERAS_TIPS_SLOW=1 bash tests/run_tests.sh   # also the slow ones
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" -e ".[test]"
export TF_CPP_MIN_LOG_LEVEL=3
export PYTHONHASHSEED=0
status=0
echo "=== KERAS_BACKEND=jax (all tests)"
KERAS_BACKEND=jax python -m pytest -q -p no:cacheprovider tests "$@" || status=1
for backend in tensorflow torch; do
  echo "=== KERAS_BACKEND=${backend} (multibackend tests)"
  KERAS_BACKEND=${backend} python -m pytest -q -p no:cacheprovider -m multibackend tests "$@" || status=1
done
exit ${status}
