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
def test_latest_holding_junk(tmp_path, content, caplog):
    """A damaged `latest` pointer: the newest intact folder is used, with a
    warning; without one, the error names `latest`."""
    directory = str(tmp_path)
    _small_checkpoint(directory)
    with open(os.path.join(directory, "latest"), "w") as f:
        f.write(content)
    model = tiny_model()
    with caplog.at_level("WARNING"):
        assert restore_checkpoint(model, directory)["step"] == 3
    _assert_filled_with(model, 3)
    assert "latest" in caplog.text and "step_00000003 (step 3)" in caplog.text
    latest_checkpoint_error = None
    try:
        latest_checkpoint(directory)
    except CheckpointError as error:
        latest_checkpoint_error = str(error)
    assert latest_checkpoint_error and "latest" in latest_checkpoint_error
    shutil.rmtree(os.path.join(directory, "step_00000003"))
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


# --- Walking back past damaged checkpoints ----------------------------------


def _checkpoints(directory, steps, keep=3):
    for step in steps:
        model = tiny_model()
        fill(model, step)
        save_checkpoint(model, directory, step, extra_state={"fill": step}, keep=keep)


def _folder(directory, step):
    return os.path.join(directory, f"step_{step:08d}")


DAMAGES = {
    "weights bytes flipped": ("model.weights.h5", damage.flip_bytes),
    "weights truncated": ("model.weights.h5", damage.truncate),
    "weights removed": ("model.weights.h5", os.remove),
    "state truncated": ("state.json", damage.truncate),
    "state emptied": ("state.json", damage.empty),
    "state removed": ("state.json", os.remove),
}


@pytest.mark.parametrize("kind", sorted(DAMAGES))
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, kind, caplog):
    directory = str(tmp_path)
    _checkpoints(directory, [1, 2, 3])
    file, damage_file = DAMAGES[kind]
    damage_file(os.path.join(_folder(directory, 3), file))
    model = tiny_model()
    with caplog.at_level("WARNING", logger="keras_tips.training.checkpoint"):
        state = restore_checkpoint(model, directory)
    assert state["step"] == 2 and state["extra"] == {"fill": 2}
    _assert_filled_with(model, 2)
    # The warning names the damaged checkpoint (its file) and the one used.
    assert f"step_00000003/{file}" in caplog.text or (
        file == "state.json" and "step_00000003" in caplog.text
    ), caplog.text
    assert "Resuming from the newest intact checkpoint, step_00000002 (step 2)" in caplog.text


def test_walks_back_past_several_damaged_checkpoints(tmp_path, caplog):
    directory = str(tmp_path)
    _checkpoints(directory, [1, 2, 3])
    damage.flip_bytes(os.path.join(_folder(directory, 3), "model.weights.h5"))
    shutil.rmtree(_folder(directory, 2))
    # `latest` still names step 3; step 2 is gone, step 1 is intact.
    model = tiny_model()
    with caplog.at_level("WARNING", logger="keras_tips.training.checkpoint"):
        assert restore_checkpoint(model, directory)["step"] == 1
    _assert_filled_with(model, 1)
    assert "step_00000003" in caplog.text and "step_00000001 (step 1)" in caplog.text


def test_no_intact_checkpoint_names_the_files_to_restore_or_remove(tmp_path):
    directory = str(tmp_path)
    _checkpoints(directory, [1, 2])
    damage.flip_bytes(os.path.join(_folder(directory, 2), "model.weights.h5"))
    damage.truncate(os.path.join(_folder(directory, 1), "state.json"))
    with pytest.raises(CheckpointError) as raised:
        restore_checkpoint(tiny_model(), directory)
    message = str(raised.value)
    assert "No intact checkpoint" in message
    assert os.path.join(_folder(directory, 2), "model.weights.h5") in message
    assert os.path.join(_folder(directory, 1), "state.json") in message
    assert "Restore the damaged files" in message and f"remove {directory}" in message


def test_a_checkpoint_the_usable_check_refuses_is_skipped(tmp_path, caplog):
    """E.g. a process's data position missing: the checkpoint is passed
    over like a damaged one."""
    directory = str(tmp_path)
    _checkpoints(directory, [1, 2])

    def usable(state):
        if state["step"] == 2:
            raise CheckpointError("the data position of step 2 is missing")

    with caplog.at_level("WARNING", logger="keras_tips.training.checkpoint"):
        assert restore_checkpoint(tiny_model(), directory, usable)["step"] == 1
    assert "data position of step 2 is missing" in caplog.text


def test_a_configuration_mismatch_is_not_walked_past(tmp_path):
    """Another model's checkpoint is no damage: older ones would not fit
    either, so the run stops naming the file."""
    directory = str(tmp_path)
    _checkpoints(directory, [1, 2])
    other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5)])
    other.compile(optimizer="adam", loss="mse")
    with pytest.raises(CheckpointError, match="step_00000002/model.weights.h5"):
        restore_checkpoint(other, directory)


def test_keep_and_stale_folders(tmp_path):
    """The newest `keep` checkpoints stay; after a resume from an older one,
    the abandoned later folders are ignored on restore and removed by the
    next save."""
    directory = str(tmp_path)
    _checkpoints(directory, [1, 2, 3, 4, 5], keep=3)
    assert sorted(os.listdir(directory)) == [
        "latest", "step_00000003", "step_00000004", "step_00000005"
    ]
    # A complete folder newer than `latest` (a save killed before it was
    # published) is not used.
    shutil.copytree(_folder(directory, 5), _folder(directory, 9))
    with open(os.path.join(directory, "latest"), "w") as f:
        f.write("step_00000004")
    assert restore_checkpoint(tiny_model(), directory)["step"] == 4
    _checkpoints(directory, [5], keep=3)
    assert sorted(os.listdir(directory)) == [
        "latest", "step_00000003", "step_00000004", "step_00000005"
    ]
    # Without `latest`, the newest intact folder.
    os.remove(os.path.join(directory, "latest"))
    assert restore_checkpoint(tiny_model(), directory)["step"] == 5


def test_data_positions_per_process(tmp_path):
    from keras_tips.training.checkpoint import read_data_position
    from keras_tips.training.checkpoint import save_data_position

    directory = str(tmp_path)
    for step in (10, 20, 30, 40, 50):
        for process in (0, 1):
            save_data_position(directory, step, {"at": [step, process]}, process, keep=2)
    assert read_data_position(directory, 50, 1) == {"at": [50, 1]}
    assert read_data_position(directory, 30, 0) == {"at": [30, 0]}
    # keep + 1 positions per process.
    assert sorted(os.listdir(os.path.join(directory, "data_process_1"))) == [
        "step_00000030.json", "step_00000040.json", "step_00000050.json"
    ]
    with pytest.raises(CheckpointError, match="process 0 at step 20.*missing"):
        read_data_position(directory, 20, 0)
    damage.truncate(os.path.join(directory, "data_process_1", "step_00000050.json"))
    with pytest.raises(CheckpointError, match="step_00000050.json.*damaged"):
        read_data_position(directory, 50, 1)
    # A position of another step or process put in its place is refused.
    shutil.copy(
        os.path.join(directory, "data_process_0", "step_00000040.json"),
        os.path.join(directory, "data_process_1", "step_00000040.json"),
    )
    with pytest.raises(CheckpointError, match="process 0"):
        read_data_position(directory, 40, 1)
    # A resumed run's save removes the positions of abandoned later steps.
    save_data_position(directory, 30, {"at": "again"}, 0, keep=2)
    assert sorted(os.listdir(os.path.join(directory, "data_process_0"))) == [
        "step_00000030.json"
    ]
