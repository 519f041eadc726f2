"""Atomic, resumable training checkpoints that survive damage.

Layout of a checkpoint directory:

```
latest                           names the newest published checkpoint
step_00000400/model.weights.h5   weights and optimizer state
step_00000400/state.json         step, extra state, seed states, SHA-256
step_00000200/...                older checkpoints (`keep` in all)
data_process_0/step_00000400.json   each process's data position per step
data_process_1/step_00000400.json
```

`save_checkpoint` writes a complete folder per step and then points `latest`
at it. `restore_checkpoint` starts at the checkpoint `latest` names and walks
back to the newest intact one (state file readable and of its step, weights
present with the SHA-256 they were saved with, and whatever else the caller
needs, such as every process's data position): a damaged checkpoint costs
one checkpoint interval, with a warning naming it and the one used, instead
of the run. Only when no checkpoint is intact does it stop, with a
`CheckpointError` that lists the damaged files to restore or remove. A
checkpoint written by another model or optimizer configuration is not
damage: it stops the run with a `CheckpointError` naming the file.

The data positions are written by each process for itself
(`save_data_position`) before the weights of the same step are published,
so a published checkpoint has them unless they were damaged later.
"""

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile

import keras
import numpy as np

from keras_tips.atomic_files import TMP_PREFIX
from keras_tips.atomic_files import write_atomically
from keras_tips.errors import CheckpointError
from keras_tips.training.distribution import outside_distribution
from keras_tips.training.nonfinite import nonfinite_variable

logger = logging.getLogger(__name__)

LATEST = "latest"
WEIGHTS_FILE = "model.weights.h5"
STATE_FILE = "state.json"
STAGING_PREFIX = ".staging-"
CHECKPOINT_NAME = re.compile(r"^step_(\d{8,})$")
DATA_POSITION_FOLDER = "data_process_{process_index}"
DEFAULT_KEEP = 3


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


def checkpoint_name(step):
    """`step_XXXXXXXX`: the folder of the checkpoint of `step`."""
    return f"step_{int(step):08d}"


def save_checkpoint(model, directory, step, extra_state=None, keep=DEFAULT_KEEP):
    """Writes model + optimizer state of `step` so a kill never corrupts it.

    Everything goes to a fresh `step_XXXXXXXX` folder; only when it is
    complete does the small `latest` file (replaced atomically) point to it.
    A kill at any moment leaves `latest` naming a complete checkpoint. The
    folder holds `model.weights.h5` (weights, optimizer state) and
    `state.json` (step, `extra_state`, random seed states and the SHA-256
    of the weights file, checked on restore). Checkpoint folders of later
    steps (left by a run that was resumed from an earlier checkpoint) are
    removed, and of the earlier ones the newest `keep` are kept.

    Args:
        model: a compiled `keras.Model` (its optimizer is saved too).
        directory: str. Checkpoint root.
        step: int. Training step the weights belong to.
        extra_state: JSON-serialisable dict (e.g. the data iterator state).
        keep: int. Complete checkpoints to keep (more than one, so that a
            damaged latest checkpoint is not the only one).

    Raises:
        CheckpointError: if any weight is NaN or infinite (never saved).
    """
    name = nonfinite_variable(model)
    if name is not None:
        raise CheckpointError(
            f"Refusing to save step {step}: weight {name!r} is not finite."
        )
    os.makedirs(directory, exist_ok=True)
    name = checkpoint_name(step)
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=directory)
    try:
        weights = os.path.join(staging, WEIGHTS_FILE)
        with outside_distribution():
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
    folders = checkpoint_folders(directory)
    stale = [n for s, n in folders if s > step]
    kept = [n for s, n in folders if s <= step][:keep]
    for old in stale + [n for _, n in folders if n not in kept + stale]:
        shutil.rmtree(os.path.join(directory, old), ignore_errors=True)
    # Left by saves that were killed half-way.
    for entry in os.listdir(directory):
        if entry.startswith(STAGING_PREFIX):
            shutil.rmtree(os.path.join(directory, entry), ignore_errors=True)
        elif entry.startswith(TMP_PREFIX):
            try:
                os.remove(os.path.join(directory, entry))
            except OSError:
                pass
    return final


def checkpoint_folders(directory):
    """`(step, folder name)` of every checkpoint folder, newest first."""
    if not os.path.isdir(directory):
        return []
    folders = []
    for entry in os.listdir(directory):
        match = CHECKPOINT_NAME.match(entry)
        if match and os.path.isdir(os.path.join(directory, entry)):
            folders.append((int(match.group(1)), entry))
    return sorted(folders, reverse=True)


def latest_checkpoint(directory):
    """Path of the checkpoint folder `latest` names, or None.

    Raises:
        CheckpointError: if `latest` does not name a complete checkpoint
            folder of `directory`.
    """
    name = _read_latest(os.path.join(directory, LATEST))
    if name is None:
        return None
    path = os.path.join(directory, name)
    if not os.path.isfile(os.path.join(path, STATE_FILE)):
        raise CheckpointError(
            f"{os.path.join(directory, LATEST)} names {name!r}, which is "
            f"incomplete or missing (no {os.path.join(path, STATE_FILE)})."
        )
    return path


def _read_latest(pointer):
    """The folder name in `latest`, or None without one.

    Raises:
        CheckpointError: `latest` is unreadable or names no checkpoint.
    """
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
    return name


def _read_state(path):
    state_path = os.path.join(path, STATE_FILE)
    if not os.path.isfile(state_path):
        raise CheckpointError(
            f"{path} is incomplete or missing (no {state_path})."
        )
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


def check_checkpoint(path):
    """Checks that a checkpoint folder is intact, without loading it.

    Intact: `state.json` is readable and of the folder's step, and
    `model.weights.h5` is there with the SHA-256 it was saved with (when the
    state records one).

    Returns:
        The saved state dict.

    Raises:
        CheckpointError: naming the damaged or missing file.
    """
    state = _read_state(path)
    match = CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(path)))
    if match and int(match.group(1)) != state["step"]:
        raise CheckpointError(
            f"The checkpoint state {os.path.join(path, STATE_FILE)} is of "
            f"step {state['step']}, not of its folder's step: it was altered "
            "or moved."
        )
    weights = os.path.join(path, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise CheckpointError(f"The checkpoint weights {weights} are missing.")
    expected = state.get("weights_sha256")
    if expected is not None and _sha256(weights) != expected:
        raise CheckpointError(
            f"The checkpoint weights {weights} are not the file that was "
            "saved (SHA-256 mismatch): it was damaged or altered."
        )
    return state


def find_intact_checkpoint(directory, usable=None):
    """The newest intact checkpoint, walking back from `latest`.

    Folders newer than the one `latest` names (a save killed before it was
    published) are not considered. Without a readable `latest`, every
    checkpoint folder is. Each damaged checkpoint skipped on the way, and
    the one used, are named in a warning.

    Args:
        directory: str. Checkpoint root.
        usable: optional callable `state -> None` (the checkpoint's saved
            state dict, with its `"step"`) that raises `CheckpointError`
            when that checkpoint cannot be used (e.g. a process's data
            position for it is missing or damaged).

    Returns:
        `(path, state)`, or None when there is no checkpoint at all.

    Raises:
        CheckpointError: when checkpoints exist but none is intact; the
            message lists each damaged file, and what to restore or remove.
    """
    pointer = os.path.join(directory, LATEST)
    damaged = []
    try:
        newest = _read_latest(pointer)
    except CheckpointError as error:
        damaged.append((LATEST, str(error)))
        newest = None
    folders = checkpoint_folders(directory)
    if newest is not None:
        newest_step = int(CHECKPOINT_NAME.match(newest).group(1))
        if newest not in [name for _, name in folders]:
            damaged.append(
                (newest, f"{pointer} names {newest!r}, which is missing.")
            )
        folders = [(s, n) for s, n in folders if s <= newest_step]
    elif not damaged and folders:
        logger.warning(
            "%s has checkpoint folders but no `latest` file; resuming from "
            "the newest intact one.",
            directory,
        )
    for step, name in folders:
        path = os.path.join(directory, name)
        try:
            state = check_checkpoint(path)
            if usable is not None:
                usable(state)
        except CheckpointError as error:
            damaged.append((name, str(error)))
            continue
        if damaged:
            logger.warning(
                "Skipped damaged checkpoint(s) in %s: %s Resuming from the "
                "newest intact checkpoint, %s (step %d).",
                directory,
                " ".join(f"{n}: {reason}" for n, reason in damaged),
                name,
                step,
            )
        return path, state
    if not damaged:
        return None
    raise CheckpointError(
        f"No intact checkpoint in {directory}:\n"
        + "\n".join(f"  {n}: {reason}" for n, reason in damaged)
        + "\nRestore the damaged files named above from a backup to resume, "
        f"or remove {directory} (or move it aside) to start the run over."
    )


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


def restore_checkpoint(model, directory, usable=None):
    """Restores the newest intact checkpoint into `model` (and its
    optimizer); see `find_intact_checkpoint` for the walk back past damaged
    ones.

    Args:
        model: a compiled `keras.Model`.
        directory: str. Checkpoint root.
        usable: optional callable `state -> None` raising `CheckpointError`
            when that checkpoint cannot be used (see
            `find_intact_checkpoint`).

    Returns:
        The saved state dict (`{"step": ..., "extra": ...}`), or None when
        there is no checkpoint yet.

    Raises:
        CheckpointError: naming the files, if no checkpoint is intact, or
            the checkpoint is from a different model or optimizer
            configuration.
    """
    found = find_intact_checkpoint(directory, usable)
    if found is None:
        return None
    path, state = found
    load_checkpoint(model, path, state)
    return state


def load_checkpoint(model, path, state):
    """Loads one checkpoint folder (checked by `check_checkpoint`, which
    gave `state`) into `model` and its optimizer.

    Raises:
        CheckpointError: the checkpoint is from a different model or
            optimizer configuration, or its weights cannot be read.
    """
    weights = os.path.join(path, WEIGHTS_FILE)
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


# --- Data positions -----------------------------------------------------------


def data_position_path(directory, step, process_index=0):
    """`directory/data_process_{i}/step_XXXXXXXX.json`."""
    folder = DATA_POSITION_FOLDER.format(process_index=int(process_index))
    return os.path.join(directory, folder, checkpoint_name(step) + ".json")


def save_data_position(directory, step, position, process_index=0, keep=DEFAULT_KEEP):
    """Writes one process's data position at `step` atomically, and keeps
    the positions of the `keep` + 1 newest steps up to `step` (one more than
    the checkpoints kept: the newest may be written before its checkpoint).

    Args:
        directory: str. Checkpoint root.
        step: int.
        position: JSON-serialisable (the pipeline's `get_state()`).
        process_index: int. The writing process.
        keep: int. As `save_checkpoint`'s.
    """
    path = data_position_path(directory, step, process_index)
    record = {"step": int(step), "process_index": int(process_index), "position": position}
    write_atomically(path, json.dumps(record))
    folder = os.path.dirname(path)
    steps = []
    for entry in os.listdir(folder):
        match = CHECKPOINT_NAME.match(entry[: -len(".json")]) if entry.endswith(".json") else None
        if match:
            steps.append(int(match.group(1)))
    newer = [s for s in steps if s > step]
    older = sorted((s for s in steps if s <= step), reverse=True)[keep + 1 :]
    for old in newer + older:
        try:
            os.remove(data_position_path(directory, old, process_index))
        except OSError:
            pass


def read_data_position(directory, step, process_index=0):
    """The data position one process saved at `step`.

    Raises:
        CheckpointError: naming the file, if it is missing or damaged.
    """
    path = data_position_path(directory, step, process_index)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if record["step"] != int(step) or record["process_index"] != int(process_index):
            raise ValueError(
                f"it holds step {record['step']} of process "
                f"{record['process_index']}"
            )
        return record["position"]
    except FileNotFoundError as error:
        raise CheckpointError(
            f"The data position of process {process_index} at step {step} "
            f"({path}) is missing."
        ) from error
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(
            f"Could not read the data position {path} ({error!r}): it was "
            "damaged or altered."
        ) from error


class PeriodicCheckpoint(keras.callbacks.Callback):
    """Saves an atomic checkpoint at the end of every epoch (use
    `steps_per_epoch` as the checkpoint interval).

    Args:
        directory: str. Checkpoint root.
        state_fn: optional callable `step -> dict` of extra state to save
            with the weights.
        keep: int. Complete checkpoints to keep.
        before_save: optional callable `step -> None` run first (e.g. the
            processes' data positions, written before the weights).
        writes_weights: bool. False: only `before_save` runs (a process of a
            multi-process run that does not write the shared checkpoint).
    """

    def __init__(
        self, directory, state_fn=None, keep=DEFAULT_KEEP, before_save=None,
        writes_weights=True,
    ):
        super().__init__()
        self.directory = directory
        self.state_fn = state_fn
        self.keep = keep
        self.before_save = before_save
        self.writes_weights = writes_weights

    def on_epoch_end(self, epoch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.step_counter))
        if self.before_save is not None:
            self.before_save(step)
        if self.writes_weights:
            extra = self.state_fn(step) if self.state_fn else None
            save_checkpoint(self.model, self.directory, step, extra, self.keep)
