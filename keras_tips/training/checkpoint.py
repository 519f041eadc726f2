"""Atomic, resumable training checkpoints.

`save_checkpoint` writes a complete folder per step and then points `latest`
at it; `restore_checkpoint` checks it (SHA-256, optimizer state, seed states)
before a run goes on from it. Every problem is a `CheckpointError` naming the
file.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile

import keras
import numpy as np

from keras_tips.atomic_files import TMP_PREFIX
from keras_tips.atomic_files import write_atomically
from keras_tips.errors import CheckpointError
from keras_tips.training.nonfinite import nonfinite_variable

LATEST = "latest"
WEIGHTS_FILE = "model.weights.h5"
STATE_FILE = "state.json"
STAGING_PREFIX = ".staging-"
CHECKPOINT_NAME = re.compile(r"^step_\d{8,}$")


def _seed_generators(model):
    """The model's `keras.random.SeedGenerator`s, in a fixed layer order.

    Their states (e.g. those of `DropPath`) are variables that
    `model.save_weights` leaves out; a resumed run needs them to draw the
    same random numbers as an uninterrupted one.
    """
    generators, seen = [], set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for generator in getattr(layer, "_seed_generators", ()):
            if id(generator) not in seen:
                seen.add(id(generator))
                generators.append(generator)
    return generators


def _seed_states(model):
    return [
        [int(v) for v in np.ravel(keras.ops.convert_to_numpy(g.state))]
        for g in _seed_generators(model)
    ]


def _restore_seed_states(model, states, path):
    generators = _seed_generators(model)
    if len(states) != len(generators):
        raise CheckpointError(
            f"The checkpoint {path} holds {len(states)} random seed states; "
            f"the model has {len(generators)} seed generators. Is it from a "
            "different model configuration?"
        )
    for generator, values in zip(generators, states):
        variable = generator.state
        value = np.asarray(values, dtype=variable.dtype).reshape(variable.shape)
        variable.assign(value)


def _fsync(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(model, directory, step, extra_state=None, keep=2):
    """Writes model + optimizer state of `step` so a kill never corrupts it.

    Everything goes to a fresh `step_XXXXXXXX` folder; only when it is
    complete does the small `latest` file (replaced atomically) point to it.
    A kill at any moment leaves `latest` naming a complete checkpoint. The
    folder holds `model.weights.h5` (weights, optimizer state) and
    `state.json` (step, `extra_state`, random seed states and the SHA-256
    of the weights file, checked on restore).

    Args:
        model: a compiled `keras.Model` (its optimizer is saved too).
        directory: str. Checkpoint root.
        step: int. Training step the weights belong to.
        extra_state: JSON-serialisable dict (e.g. the data iterator state).
        keep: int. Complete checkpoints to keep.

    Raises:
        CheckpointError: if any weight is NaN or infinite (never saved).
    """
    name = nonfinite_variable(model)
    if name is not None:
        raise CheckpointError(
            f"Refusing to save step {step}: weight {name!r} is not finite."
        )
    os.makedirs(directory, exist_ok=True)
    name = f"step_{int(step):08d}"
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=directory)
    try:
        weights = os.path.join(staging, WEIGHTS_FILE)
        model.save_weights(weights)
        _fsync(weights)
        state = {
            "step": int(step),
            "extra": extra_state or {},
            "seed_generators": _seed_states(model),
            "weights_sha256": _sha256(weights),
        }
        state_path = os.path.join(staging, STATE_FILE)
        with open(state_path, "w", encoding="utf-8") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        final = os.path.join(directory, name)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_atomically(os.path.join(directory, LATEST), name)
    entries = os.listdir(directory)
    complete = sorted(d for d in entries if CHECKPOINT_NAME.match(d))
    for old in complete[:-keep]:
        shutil.rmtree(os.path.join(directory, old), ignore_errors=True)
    # Left by saves that were killed half-way.
    for entry in entries:
        if entry.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(directory, entry), ignore_errors=True)
        elif entry.startswith(TMP_PREFIX):
            try:
                os.remove(os.path.join(directory, entry))
            except OSError:
                pass
    return final


def latest_checkpoint(directory):
    """Path of the newest complete checkpoint, or None.

    Raises:
        CheckpointError: if `latest` does not name a complete checkpoint
            folder of `directory`.
    """
    pointer = os.path.join(directory, LATEST)
    if not os.path.isfile(pointer):
        return None
    try:
        with open(pointer, encoding="utf-8") as f:
            name = f.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"Cannot read {pointer} ({error}).") from error
    if not CHECKPOINT_NAME.match(name):
        raise CheckpointError(
            f"{pointer} should name a checkpoint folder (step_XXXXXXXX); it "
            f"holds {name[:100]!r}."
        )
    path = os.path.join(directory, name)
    if not os.path.isfile(os.path.join(path, STATE_FILE)):
        raise CheckpointError(
            f"{pointer} names {name!r}, which is incomplete or missing "
            f"(no {os.path.join(path, STATE_FILE)})."
        )
    return path


def _read_state(path):
    state_path = os.path.join(path, STATE_FILE)
    try:
        with open(state_path, encoding="utf-8") as f:
            state = json.load(f)
        state["step"] = int(state["step"])
        if not isinstance(state.get("extra", {}), dict):
            raise TypeError("'extra' is not an object")
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(
            f"Could not read the checkpoint state {state_path} ({error!r})."
        ) from error
    return state


def _check_optimizer_state(model, weights):
    """Keras only warns, and keeps a fresh optimizer state, when the saved
    optimizer has other variables; a resumed run must not go on silently
    with reset moments and step count."""
    if model.optimizer is None:
        return
    import h5py

    try:
        with h5py.File(weights, "r") as f:
            group = f.get("optimizer/vars")
            saved = 0 if group is None else len(group)
    except Exception as error:
        raise CheckpointError(
            f"Could not read the checkpoint weights {weights} ({error})."
        ) from error
    expected = len(model.optimizer.variables)
    if saved != expected:
        raise CheckpointError(
            f"The optimizer state in {weights} has {saved} variables; the "
            f"model's optimizer ({type(model.optimizer).__name__}) has "
            f"{expected}. Was the checkpoint written with another optimizer "
            "or another `train.nonfinite` mode?"
        )


def restore_checkpoint(model, directory):
    """Restores the latest checkpoint into `model` (and its optimizer).

    Returns:
        The saved state dict (`{"step": ..., "extra": ...}`), or None when
        there is no checkpoint yet.

    Raises:
        CheckpointError: naming the file, if `latest` names no complete
            checkpoint, or the checkpoint's files are damaged, altered or
            from a different model configuration.
    """
    path = latest_checkpoint(directory)
    if path is None:
        return None
    state = _read_state(path)
    weights = os.path.join(path, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise CheckpointError(f"The checkpoint weights {weights} are missing.")
    expected = state.get("weights_sha256")
    if expected is not None and _sha256(weights) != expected:
        raise CheckpointError(
            f"The checkpoint weights {weights} are not the file that was "
            "saved (SHA-256 mismatch): it was damaged or altered."
        )
    if not model.built:
        # A subclassed model whose layers are built in `__init__` (as
        # `TIPSPretrainer`'s are) has all its variables before it is first
        # called; Keras refuses to load into it only because it was never
        # called. A layer still lacking variables makes the load below fail
        # on the variable count.
        model.built = True
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    _check_optimizer_state(model, weights)
    try:
        model.load_weights(weights)
    except Exception as error:
        raise CheckpointError(
            f"Could not read the checkpoint weights {weights} ({error}). Is "
            "it from a different model configuration, or was the file "
            "altered?"
        ) from error
    if "seed_generators" in state:
        _restore_seed_states(model, state["seed_generators"], path)
    return state


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
