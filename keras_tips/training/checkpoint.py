"""Atomic, resumable training checkpoints and the non-finite-loss guard."""

import json
import math
import os
import shutil
import tempfile

import keras
import numpy as np

LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read."""


def _write_atomically(path, text):
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _all_finite(model):
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return False, variable.path
    return True, None


def save_checkpoint(model, directory, step, extra_state=None, keep=2):
    """Writes model + optimizer state of `step` so a kill never corrupts it.

    Everything goes to a fresh `step_XXXXXXXX` folder; only when it is
    complete does the small `latest` file (replaced atomically) point to it.
    A kill at any moment leaves `latest` naming a complete checkpoint.

    Args:
        model: a compiled `keras.Model` (its optimizer is saved too).
        directory: str. Checkpoint root.
        step: int. Training step the weights belong to.
        extra_state: JSON-serialisable dict (e.g. the data iterator state).
        keep: int. Complete checkpoints to keep.

    Raises:
        CheckpointError: if any weight is NaN or infinite (never saved).
    """
    finite, name = _all_finite(model)
    if not finite:
        raise CheckpointError(
            f"Refusing to save step {step}: weight {name!r} is not finite."
        )
    os.makedirs(directory, exist_ok=True)
    name = f"step_{int(step):08d}"
    staging = tempfile.mkdtemp(prefix=".staging-", dir=directory)
    try:
        model.save_weights(os.path.join(staging, "model.weights.h5"))
        state = {"step": int(step), "extra": extra_state or {}}
        with open(os.path.join(staging, "state.json"), "w", encoding="utf-8") as f:
            json.dump(state, f)
        final = os.path.join(directory, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _write_atomically(os.path.join(directory, LATEST), name)
    complete = sorted(d for d in os.listdir(directory) if d.startswith("step_"))
    for old in complete[:-keep]:
        shutil.rmtree(os.path.join(directory, old), ignore_errors=True)
    return final


def latest_checkpoint(directory):
    """Path of the newest complete checkpoint, or None."""
    pointer = os.path.join(directory, LATEST)
    if not os.path.isfile(pointer):
        return None
    with open(pointer, encoding="utf-8") as f:
        name = f.read().strip()
    path = os.path.join(directory, name)
    if not os.path.isfile(os.path.join(path, "state.json")):
        raise CheckpointError(
            f"{pointer} names {name!r}, which is incomplete or missing."
        )
    return path


def restore_checkpoint(model, directory):
    """Restores the latest checkpoint into `model` (and its optimizer).

    Returns:
        The saved state dict (`{"step": ..., "extra": ...}`), or None when
        there is no checkpoint yet.
    """
    path = latest_checkpoint(directory)
    if path is None:
        return None
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(os.path.join(path, "model.weights.h5"))
    except Exception as error:
        raise CheckpointError(
            f"Could not read the checkpoint {path} ({error}). Is it from a "
            "different model configuration, or was the file altered?"
        ) from error
    with open(os.path.join(path, "state.json"), encoding="utf-8") as f:
        return json.load(f)


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves an atomic checkpoint at the end of every epoch (use
    `steps_per_epoch` as the checkpoint interval).

    Args:
        directory: str. Checkpoint root.
        state_fn: optional callable `step -> dict` of extra state to save
            with the weights (e.g. the data iterator position).
        keep: int. Complete checkpoints to keep.
    """

    def __init__(self, directory, state_fn=None, keep=2):
        super().__init__()
        self.directory = directory
        self.state_fn = state_fn
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.step_counter))
        extra = self.state_fn(step) if self.state_fn else None
        save_checkpoint(self.model, self.directory, step, extra, self.keep)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss terms are not finite.

    Raises `FloatingPointError` naming the step and every non-finite term,
    before any checkpoint of that step can be written.
    """

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        bad = {
            name: float(value)
            for name, value in logs.items()
            if np.ndim(value) == 0 and not math.isfinite(float(value))
        }
        if bad:
            step = int(keras.ops.convert_to_numpy(self.model.step_counter))
            raise FloatingPointError(
                f"Non-finite loss at training step {step}: "
                + ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
                + ". Lower the learning rate, check the data, or set "
                "`skip_nonfinite_steps` in the recipe."
            )
