"""A preset saved on one backend loads on the other two with equal outputs.

Each backend runs in its own process, as Keras fixes the backend at import.
"""

import os
import subprocess
import sys

import pytest

BACKENDS = ("jax", "tensorflow", "torch")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(backend, verb, directory):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "tests.models.cross_backend_worker", verb, directory],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, f"{verb} on {backend} failed:\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("saved_on", BACKENDS)
def test_preset_loads_on_every_backend(tmp_path, saved_on):
    directory = str(tmp_path / f"preset_{saved_on}")
    _run(saved_on, "save", directory)
    for backend in BACKENDS:
        if backend != saved_on:
            _run(backend, "load", directory)
