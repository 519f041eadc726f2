"""Atomic, resumable training checkpoints and the non-finite-loss guard."""

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile

import keras
import numpy as np

from keras_tips.atomic_files import TMP_PREFIX
from keras_tips.atomic_files import write_atomically

LATEST = "latest"
WEIGHTS_FILE = "model.weights.h5"
STATE_FILE = "state.json"
STAGING_PREFIX = ".staging-"
CHECKPOINT_NAME = re.compile(r"^step_\d{8,}$")

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read."""


def _all_finite(model):
    for variable in model.weights:
        value = keras.ops.convert_to_numpy(variable)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return False, variable.path
    return True, None


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
    finite, name = _all_finite(model)
    if not finite:
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


def _nonfinite_logs(logs):
    return {
        name: float(value)
        for name, value in (logs or {}).items()
        if np.ndim(value) == 0 and not math.isfinite(float(value))
    }


def _current_step(model):
    if hasattr(model, "jax_state_sync"):
        # JAX keeps the state outside the variables during an epoch.
        model.jax_state_sync()
    return int(keras.ops.convert_to_numpy(model.step_counter))


def _terms(bad):
    return ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss terms are not finite.

    Raises `FloatingPointError` naming the step and every non-finite term,
    before any checkpoint of that step can be written.
    """

    def on_train_batch_end(self, batch, logs=None):
        bad = _nonfinite_logs(logs)
        if bad:
            step = _current_step(self.model)
            raise FloatingPointError(
                f"Non-finite loss at training step {step}: {_terms(bad)}. "
                "Lower the learning rate, check the data, or set "
                '`train.nonfinite="skip"` in the recipe to skip such steps.'
            )


@keras.saving.register_keras_serializable(package="keras_tips")
class SkipNonFiniteUpdates(keras.optimizers.LossScaleOptimizer):
    """Applies the wrapped optimizer's update only when every gradient is
    finite; otherwise the step leaves the weights and the optimizer state
    (moments, `iterations`, hence the learning-rate schedule) unchanged.

    It is Keras' `LossScaleOptimizer` (which already skips such steps on
    every backend) with the loss scale fixed at 1: the loss is not scaled,
    the scale is never halved or doubled, and steps with finite gradients
    are exactly those of the wrapped optimizer.

    Args:
        inner_optimizer: the optimizer to wrap.
        name: optional name.
    """

    def __init__(self, inner_optimizer, name=None, **kwargs):
        kwargs.pop("initial_scale", None)
        kwargs.pop("dynamic_growth_steps", None)
        super().__init__(
            inner_optimizer,
            initial_scale=1.0,
            # Never reached: the scale is never doubled.
            dynamic_growth_steps=2**31 - 1,
            name=name,
            **kwargs,
        )

    def scale_loss(self, loss):
        return loss

    def _stateless_handle_non_finite_grads(
        self, optimizer_variables, trainable_variables
    ):
        return list(trainable_variables), list(optimizer_variables)

    def _stateful_handle_non_finite_grads(self):
        return None

    def get_config(self):
        config = super().get_config()
        config.pop("initial_scale", None)
        config.pop("dynamic_growth_steps", None)
        return config


class SkipNonFiniteSteps(keras.callbacks.Callback):
    """The non-finite guard of `train.nonfinite="skip"` (the model's
    optimizer must be a `SkipNonFiniteUpdates`).

    Logs a warning naming the first skipped step of each interval and its
    non-finite terms, adds `skipped_steps` (skipped in the interval) to the
    interval's logs, and raises `FloatingPointError` when skipping cannot
    help: every step of an interval was skipped, or a variable the forward
    pass updates (EMA teacher, centres) has become non-finite, which the
    optimizer cannot undo (e.g. NaN pixels reach the teacher).
    """

    def __init__(self):
        super().__init__()
        self._warned = False
        self._skipped_before = None

    def _skipped(self):
        step = int(keras.ops.convert_to_numpy(self.model.step_counter))
        applied = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        return step - applied

    def on_epoch_begin(self, epoch, logs=None):
        self._warned = False
        self._skipped_before = self._skipped()

    def on_train_batch_end(self, batch, logs=None):
        if self._warned:
            return
        bad = _nonfinite_logs(logs)
        if bad:
            self._warned = True
            step = _current_step(self.model)
            logger.warning(
                "Non-finite loss at training step %d (%s); the update of "
                "this step and of any other non-finite step of this "
                "interval is skipped.",
                step,
                _terms(bad),
            )

    def on_epoch_end(self, epoch, logs=None):
        skipped = self._skipped() - self._skipped_before
        if logs is not None:
            logs["skipped_steps"] = skipped
        step = int(keras.ops.convert_to_numpy(self.model.step_counter))
        finite, name = _all_finite(self.model)
        if not finite:
            raise FloatingPointError(
                f"At training step {step} the variable {name!r} is not "
                "finite. Skipping non-finite steps keeps the trained weights "
                "finite, but not state updated in the forward pass (EMA "
                "teacher, centres): check the data for NaN/inf pixels."
            )
        steps = self.params.get("steps") if self.params else None
        if steps and skipped >= steps:
            raise FloatingPointError(
                f"Every step of the interval ending at step {step} had a "
                "non-finite loss and was skipped: training has stalled. "
                "Lower the learning rate or check the data."
            )
