"""Checkpoints are atomic and every damaged one is reported, never loaded.

A process killed at random moments while it saves checkpoints in a loop
always leaves the latest complete checkpoint readable; a `latest` pointer or
a checkpoint folder that is missing, damaged or altered gives a clear
`CheckpointError` naming the file.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_tips.errors import CheckpointError
from keras_tips.training.checkpoint import latest_checkpoint
from keras_tips.training.checkpoint import restore_checkpoint
from keras_tips.training.checkpoint import save_checkpoint
from tests.robustness import cli_runs
from tests.robustness import damage
from tests.robustness.save_worker import fill
from tests.robustness.save_worker import tiny_model
from tests.training.pretrain_fixtures import numpy_weights
from tests.training.pretrain_fixtures import tiny_pretrainer


def _assert_filled_with(model, value):
    for variable in list(model.weights) + list(model.optimizer.variables):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(variable),
            np.full(variable.shape, value, variable.dtype),
            err_msg=variable.path,
        )


def _saved_steps(lines):
    return [int(line.split()[1]) for line in lines if line.startswith("saved ")]


def test_kills_during_saves_never_leave_an_unreadable_checkpoint(tmp_path):
    directory = str(tmp_path / "checkpoints")
    rng = random.Random(2)
    confirmed = 0
    for kill in range(4):
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.robustness.save_worker", directory,
             str(kill)],
            cwd=cli_runs.ROOT,
            env=cli_runs.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # Wait for the first save of this process, then kill it a random
            # few saves later (each save takes some tens of milliseconds).
            first = process.stdout.readline()
            assert first.startswith("saved "), (
                first + process.stderr.read()[-4000:]
            )
            time.sleep(rng.uniform(0.0, 0.5))
            process.send_signal(signal.SIGKILL)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == -signal.SIGKILL
        saves = _saved_steps([first] + output.splitlines())
        assert saves == list(range(saves[0], saves[-1] + 1))
        assert saves[0] == confirmed + 1  # It resumed from the checkpoint.
        model = tiny_model()
        state = restore_checkpoint(model, directory)
        step = state["step"]
        # The last confirmed save, or the one after it (complete, but killed
        # before it could say so).
        assert step in (saves[-1], saves[-1] + 1), (step, saves)
        assert state["extra"] == {"fill": step}
        _assert_filled_with(model, step)
        confirmed = step
    leftovers = [
        name for name in os.listdir(directory) if name.startswith(".staging-")
    ]
    assert len(leftovers) <= 1, leftovers


def _small_checkpoint(directory, step=3):
    model = tiny_model()
    fill(model, step)
    save_checkpoint(model, directory, step, extra_state={"data": [1, 2]})
    return os.path.join(directory, f"step_{step:08d}")


def test_round_trip_of_an_unbuilt_subclassed_model_and_its_seed_states(
    tmp_path,
):
    """A fresh `TIPSPretrainer` (never called, as in a resumed run) restores
    weights, optimizer state and the seed generators of its DropPath layers
    (which `save_weights` leaves out)."""
    from keras_tips.training.checkpoint import _seed_generators

    directory = str(tmp_path / "checkpoints")
    source = tiny_pretrainer(seed=1)
    source.compile(optimizer=keras.optimizers.AdamW(1e-3))
    source.optimizer.build(source.trainable_variables)
    # Its layers are all built in __init__; Keras only wants a call first.
    source.built = True
    generators = _seed_generators(source)
    assert generators, "the tiny pretrainer has no seed generators"
    for index, generator in enumerate(generators):
        generator.state.assign(
            np.array([7, 100 + index], generator.state.dtype)
        )
    source.optimizer.iterations.assign(11)
    save_checkpoint(source, directory, 11, extra_state={"data": {"i": 5}})

    target = tiny_pretrainer(seed=2)
    target.compile(optimizer=keras.optimizers.AdamW(1e-3))
    assert not target.built
    state = restore_checkpoint(target, directory)
    assert state["step"] == 11 and state["extra"] == {"data": {"i": 5}}
    for want, got in zip(numpy_weights(source), numpy_weights(target)):
        np.testing.assert_array_equal(want, got)
    assert int(keras.ops.convert_to_numpy(target.optimizer.iterations)) == 11
    for want, got in zip(generators, _seed_generators(target)):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(want.state),
            keras.ops.convert_to_numpy(got.state),
        )


def test_no_checkpoint_yet_is_none(tmp_path):
    assert restore_checkpoint(tiny_model(), str(tmp_path)) is None
    assert latest_checkpoint(str(tmp_path / "missing")) is None


def test_latest_naming_a_missing_folder(tmp_path):
    directory = str(tmp_path)
    folder = _small_checkpoint(directory)
    shutil.rmtree(folder)
    with pytest.raises(CheckpointError, match="step_00000003.*missing"):
        restore_checkpoint(tiny_model(), directory)


@pytest.mark.parametrize("content", ["", "../../etc", "/tmp", "step_1x", "\x00"])
def test_latest_holding_junk(tmp_path, content):
    directory = str(tmp_path)
    _small_checkpoint(directory)
    with open(os.path.join(directory, "latest"), "w") as f:
        f.write(content)
    with pytest.raises(CheckpointError, match="latest"):
        restore_checkpoint(tiny_model(), directory)


@pytest.mark.parametrize(
    "file, damage, message",
    [
        ("model.weights.h5", damage.truncate, "model.weights.h5"),
        ("model.weights.h5", damage.flip_bytes, "model.weights.h5.*altered"),
        ("model.weights.h5", os.remove, "model.weights.h5.*missing"),
        ("state.json", damage.truncate, "state.json"),
        ("state.json", os.remove, "incomplete or missing"),
    ],
)
def test_damaged_checkpoint_files(tmp_path, file, damage, message):
    directory = str(tmp_path)
    folder = _small_checkpoint(directory)
    damage(os.path.join(folder, file))
    with pytest.raises(CheckpointError, match=message):
        restore_checkpoint(tiny_model(), directory)


def test_checkpoint_of_another_model_configuration(tmp_path):
    directory = str(tmp_path)
    _small_checkpoint(directory)
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(CheckpointError, match="model.weights.h5"):
        restore_checkpoint(other, directory)


@pytest.mark.parametrize("optimizer", ["sgd", "skip"])
def test_checkpoint_of_another_optimizer(tmp_path, optimizer):
    """Keras alone would only warn and keep a fresh optimizer state."""
    from keras_tips.training.nonfinite import SkipNonFiniteUpdates

    directory = str(tmp_path)
    _small_checkpoint(directory)
    model = tiny_model()
    if optimizer == "sgd":
        model.compile(optimizer=keras.optimizers.SGD(), loss="mse")
    else:
        model.compile(
            optimizer=SkipNonFiniteUpdates(keras.optimizers.Adam()), loss="mse"
        )
    with pytest.raises(CheckpointError, match="optimizer state"):
        restore_checkpoint(model, directory)


def test_weights_altered_without_the_digest_are_still_loaded_exactly(tmp_path):
    """The digest is what catches silent changes: without it (an older
    checkpoint) the file is loaded as it is."""
    directory = str(tmp_path)
    folder = _small_checkpoint(directory)
    state_path = os.path.join(folder, "state.json")
    with open(state_path) as f:
        state = json.load(f)
    del state["weights_sha256"]
    with open(state_path, "w") as f:
        json.dump(state, f)
    model = tiny_model()
    assert restore_checkpoint(model, directory)["step"] == 3
    _assert_filled_with(model, 3)


def test_non_finite_weights_are_never_saved(tmp_path):
    directory = str(tmp_path)
    _small_checkpoint(directory, step=3)
    model = tiny_model()
    fill(model, 4)
    model.weights[0].assign(np.full(model.weights[0].shape, np.nan, "float32"))
    with pytest.raises(CheckpointError, match="not finite"):
        save_checkpoint(model, directory, 4)
    assert sorted(os.listdir(directory)) == ["latest", "step_00000003"]
    restored = tiny_model()
    assert restore_checkpoint(restored, directory)["step"] == 3
    _assert_filled_with(restored, 3)
