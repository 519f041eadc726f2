"""`pretrain`: a whole, resumable TIPS pretraining run from a recipe, on one
process or several.

files -> grain pipeline -> `TIPSPretrainer.fit` -> atomic checkpoints ->
exported `TIPSModel` preset. Each "epoch" of `fit` is one logging window
(`train.log_every_steps`, by default the checkpoint interval), so Keras'
epoch logs are the window means that `history.jsonl`, `CSVLogger` and
`TensorBoard` record; a checkpoint is saved every interval. A run that is
killed and started again with the same command restores the newest intact
checkpoint (weights, teacher, centres, optimizer, step) and the data
iterator state, and continues on the next unseen batch.

Several processes (hosts) run the same command on one shared output
directory (see `keras_tips.training.distribution.initialize_processes`).
Each reads its own shard of the data, feeds its slice of every global
batch, and writes its own data position at every checkpoint
(`checkpoints/data_process_{i}/`); process 0 alone writes the weights
checkpoints, the logs, `recipe.json` and the exported preset. On resume
every process restores the same checkpoint and its own position.
"""

import contextlib
import csv
import dataclasses
import importlib.util
import io
import json
import logging
import os

import keras

from keras_tips.atomic_files import write_atomically
from keras_tips.backend.processes import check_processes_agree
from keras_tips.backend.processes import sync_processes
from keras_tips.errors import CheckpointError
from keras_tips.training import distribution as distribution_lib
from keras_tips.training.checkpoint import PeriodicCheckpoint
from keras_tips.training.checkpoint import find_intact_checkpoint
from keras_tips.training.checkpoint import load_checkpoint
from keras_tips.training.checkpoint import read_data_position
from keras_tips.training.checkpoint import save_data_position
from keras_tips.training.nonfinite import SkipNonFiniteUpdates
from keras_tips.training.nonfinite import nonfinite_guard

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.jsonl"
CSV_LOG_FILE = "history.csv"
TENSORBOARD_DIR = "tensorboard"


def make_distribution(spec):
    """The `keras.distribution` of a `TrainConfig.distribution` string (None
    for "none"). It is applied as a scope around one run, so it does not leak
    into whatever the process does next."""
    if spec in (None, "", "none"):
        return None
    if spec == "data_parallel":
        return distribution_lib.data_parallel()
    if isinstance(spec, str) and spec.startswith("model_parallel:"):
        size = spec.split(":", 1)[1]
        if not size.isdigit() or int(size) < 1:
            raise ValueError(
                "train.distribution='model_parallel:N' needs N, the devices "
                f"of one model replica, as a positive int; received {spec!r}."
            )
        try:
            return distribution_lib.model_parallel(int(size))
        except ValueError as error:
            raise ValueError(f"train.distribution={spec!r}: {error}") from None
    raise ValueError(
        "train.distribution must be 'none', 'data_parallel' or "
        f"'model_parallel:N'; received {spec!r}."
    )


def load_init_preset(recipe):
    """The `TIPSModel` of `train.init_preset` (None when unset)."""
    if not recipe.train.init_preset:
        return None
    from keras_tips.models.tips_model import TIPSModel

    return TIPSModel.from_preset(recipe.train.init_preset)


def _tokenizer_proto(tokenizer):
    proto = tokenizer.proto
    if isinstance(proto, str):
        with open(proto, "rb") as f:
            return f.read()
    return bytes(proto)


def build_tokenizer(recipe, output_dir=None, init_model=None):
    """The recipe's tokenizer: `train.init_preset`'s, `data.tokenizer`, or
    for shapes a vocabulary built on first use (kept in
    `output_dir/vocabulary.spm` when `output_dir` is given).

    Args:
        recipe: a `PretrainRecipe`.
        output_dir: optional run directory.
        init_model: the loaded `train.init_preset` (`load_init_preset`),
            to not load it again.
    """
    from keras_tips.data.vocabulary import shapes_vocabulary
    from keras_tips.models.tips_tokenizer import TIPSTokenizer

    data = recipe.data
    if recipe.train.init_preset:
        init_model = init_model or load_init_preset(recipe)
        if init_model.preprocessor is None or init_model.preprocessor.tokenizer is None:
            raise ValueError(
                f"train.init_preset={recipe.train.init_preset!r} has no "
                "tokenizer to train with."
            )
        proto = _tokenizer_proto(init_model.preprocessor.tokenizer)
        if data.tokenizer:
            with open(data.tokenizer, "rb") as f:
                if f.read() != proto:
                    raise ValueError(
                        f"data.tokenizer={data.tokenizer!r} is not the "
                        "tokenizer of train.init_preset="
                        f"{recipe.train.init_preset!r}: a preset's text tower "
                        "reads its own token ids. Leave data.tokenizer unset."
                    )
    elif data.tokenizer:
        proto = data.tokenizer
    else:
        path = os.path.join(output_dir, "vocabulary.spm") if output_dir else None
        proto = shapes_vocabulary(path, seed=data.seed)
    return TIPSTokenizer(proto=proto, sequence_length=data.sequence_length)


def build_source(data):
    """The recipe's random-access source of image-caption records."""
    if data.source == "shapes":
        from keras_tips.data.shapes import ShapesDataset

        dataset = ShapesDataset(
            "train", data.num_examples, data.image_size, seed=data.seed,
            max_objects=data.max_objects, object_scale=data.object_scale,
        )
        return dataset.image_text_source(
            multi_granularity_captions=data.multi_granularity_captions
        )
    if data.source == "jsonl":
        from keras_tips.data.sources import JsonlImageTextSource

        return JsonlImageTextSource(data.path)
    from keras_tips.data.sources import ArrayRecordImageTextSource

    return ArrayRecordImageTextSource(data.path)


def build_pipeline(recipe, tokenizer):
    """The recipe's `PretrainingPipeline` (call `close()` when done).

    Args:
        recipe: a `PretrainRecipe` (resolved here if it is not yet).
        tokenizer: the recipe's `TIPSTokenizer` (`build_tokenizer`).
    """
    from keras_tips.data.pipeline import PretrainingPipeline

    recipe.resolve()
    return PretrainingPipeline(
        build_source(recipe.data), recipe.data.pipeline, tokenizer.tokenize_numpy
    )


# Tower settings that do not change the network a preset's weights describe.
_NOT_ARCHITECTURE = (
    "name", "trainable", "dtype", "drop_path_rate", "layer_scale_init_value",
    "position_initializer",
)
# Where a tower setting comes from in a recipe, when not `model.<tower>.<key>`.
_RECIPE_SOURCES = {
    ("text", "max_sequence_length"): "data.sequence_length",
    ("text", "vocabulary_size"): "the tokenizer's vocabulary size",
}


def initialize_from_preset(backbone, init_model, preset):
    """Copies a preset's backbone weights (both towers and the contrastive
    head's temperatures) into `backbone`, after checking that both towers
    are the same networks.

    Args:
        backbone: the student `TIPSBackbone`.
        init_model: the preset's `TIPSModel`.
        preset: its name, for messages.

    Raises:
        ValueError: naming every recipe field that differs from the preset.
    """
    differences = []
    for tower, key in (("vision", "vision_encoder"), ("text", "text_encoder")):
        mine = getattr(backbone, key).get_config()
        theirs = getattr(init_model.backbone, key).get_config()
        for name in sorted(set(mine) | set(theirs)):
            if name in _NOT_ARCHITECTURE or mine.get(name) == theirs.get(name):
                continue
            source = _RECIPE_SOURCES.get((tower, name), f"model.{tower}.{name}")
            differences.append(
                f"{source} is {mine.get(name)!r}, the preset's "
                f"{theirs.get(name)!r}"
            )
    if differences:
        raise ValueError(
            f"train.init_preset={preset!r} has other towers than the recipe "
            f"describes: {'; '.join(differences)}. Set those fields to the "
            "preset's values (a position grid may differ on purpose: set "
            "model.vision.position_grid_size to the preset's, the tower "
            "interpolates it)."
        )
    backbone.set_weights(init_model.backbone.get_weights())


def build_recipe_optimizer(recipe):
    """The recipe's optimizer (wrapped to skip non-finite updates when
    `train.nonfinite="skip"`)."""
    from keras_tips.training.optimizers import build_optimizer

    recipe.resolve()
    optimizer = build_optimizer(recipe.optimizer)
    if recipe.train.nonfinite == "skip":
        optimizer = SkipNonFiniteUpdates(optimizer)
    return optimizer


def build_pretrainer(recipe, vocabulary_size, init_model=None, optimizer=None):
    """Student backbone + TIPSPretrainer + compiled optimizer, from a
    recipe (resolved here if it is not yet: the position grid, the text
    length and the optimizer's schedule length follow their sources).

    With `train.init_preset` the student starts from the preset's weights
    (loaded before the pretrainer copies the student into its EMA teacher,
    so the teacher starts from them too), and `train.lock_image` /
    `train.lock_text` freeze a tower through Keras' `trainable` flag, so the
    optimizer neither sees nor updates it.

    Args:
        recipe: a `PretrainRecipe`.
        vocabulary_size: int. The tokenizer's vocabulary size.
        init_model: the loaded `train.init_preset` (`load_init_preset`),
            to not load it again.
        optimizer: optional optimizer (default:
            `build_recipe_optimizer(recipe)`), for a caller that builds the
            model where no variable may be given a value (the memory plan's
            `keras.StatelessScope`; an optimizer sets its step counter when
            it is made).
    """
    from keras_tips.models.tips_backbone import TIPSBackbone
    from keras_tips.models.tips_text_encoder import TIPSTextEncoder
    from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder
    from keras_tips.training.pretrainer import TIPSPretrainer

    recipe.resolve()
    model = recipe.model
    text = dict(model.text, vocabulary_size=vocabulary_size)
    backbone = TIPSBackbone(
        TIPSVisionEncoder(**model.vision, dtype=model.dtype, name="vision_encoder"),
        TIPSTextEncoder(**text, dtype=model.dtype, name="text_encoder"),
        temperature=model.temperature,
        dtype=model.dtype,
    )
    train = recipe.train
    if train.init_preset:
        initialize_from_preset(
            backbone, init_model or load_init_preset(recipe), train.init_preset
        )
    pretrainer = TIPSPretrainer(
        backbone,
        total_steps=recipe.train.total_steps,
        **dataclasses.asdict(recipe.objective),
    )
    if train.lock_image:
        backbone.vision_encoder.trainable = False
    if train.lock_text:
        backbone.text_encoder.trainable = False
    if optimizer is None:
        optimizer = build_recipe_optimizer(recipe)
    pretrainer.compile(optimizer=optimizer, jit_compile=recipe.train.jit_compile)
    return pretrainer


class _TrackedBatches:
    """Feeds pipeline batches to `fit` and remembers, for every step, the
    pipeline state from which that step's batch is read.

    Keras may read a batch or two ahead of the step it trains; saving the
    state recorded *for the step* (not the pipeline's current state) makes a
    resumed run continue on the first batch that was not trained on.
    """

    def __init__(self, pipeline, first_step):
        self.pipeline = pipeline
        self.next_step = first_step
        self.states = {}

    def __iter__(self):
        while True:
            self.states[self.next_step] = self.pipeline.get_state()
            batch = next(self.pipeline)
            self.next_step += 1
            yield (batch,)

    def state_for(self, step):
        if step not in self.states:
            # Nothing was read ahead: the pipeline stands at that batch.
            if step != self.next_step:
                raise RuntimeError(
                    f"No data state recorded for step {step} (next batch "
                    f"to read is {self.next_step})."
                )
            self.states[step] = self.pipeline.get_state()
        state = self.states[step]
        for old in [s for s in self.states if s < step]:
            del self.states[old]
        return state


class _HistoryWriter(keras.callbacks.Callback):
    """Appends each logging window's logs to history.jsonl (survives
    resumes)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.step_counter))
        record = {"step": step, **{k: float(v) for k, v in (logs or {}).items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class _IntervalCheckpoint(PeriodicCheckpoint):
    """A `PeriodicCheckpoint` that saves at the end of every
    `windows_per_checkpoint`-th epoch (each epoch is one logging window);
    other keyword arguments go to `PeriodicCheckpoint`."""

    def __init__(self, directory, windows_per_checkpoint, **kwargs):
        super().__init__(directory, **kwargs)
        self.windows_per_checkpoint = windows_per_checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.windows_per_checkpoint == 0:
            super().on_epoch_end(epoch, logs)


def _truncate_csv_log(path, windows):
    """Keeps the header and the rows of the first `windows` logging windows
    of a `CSVLogger` file (whose `epoch` column counts windows from 0);
    removes the file when no row is kept, so the logger writes a new
    header."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    if not rows or "epoch" not in rows[0]:
        os.remove(path)  # Cut before its header was complete.
        return
    column = rows[0].index("epoch")
    kept = []
    for row in rows[1:]:
        try:
            if int(row[column]) < windows:
                kept.append(row)
        except (IndexError, ValueError):
            continue  # A row cut short by a kill.
    if not kept:
        os.remove(path)
    elif len(kept) != len(rows) - 1:
        text = io.StringIO()
        csv.writer(text).writerows([rows[0]] + kept)
        write_atomically(path, text.getvalue())


def _truncate_history(path, step):
    """Drops the records of steps after `step` (logged by a run that was
    killed before it saved their checkpoint; the resumed run logs them
    again). Replaces the file atomically."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # A line cut short by a kill.
        if isinstance(record, dict) and record.get("step", step + 1) <= step:
            kept.append(json.dumps(record) + "\n")
    if kept == lines:
        return
    write_atomically(path, "".join(kept))


def read_history(output_dir):
    """The logged metrics of a run: a list of dicts, one per logging window
    (`train.log_every_steps`), each with its last `"step"`."""
    path = os.path.join(output_dir, HISTORY_FILE)
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # Empty, or cut short by a kill.
    return records


def pretrain(recipe, output_dir, verbose="auto", callbacks=None):
    """Runs (or resumes) a pretraining recipe and exports the student.

    When several processes are configured (see
    `keras_tips.training.distribution.initialize_processes`), they are
    started first; every process runs this with the same recipe and the
    same, shared `output_dir`. The recipe's `train.distribution` applies
    inside this call only.

    Args:
        recipe: a validated `PretrainRecipe`.
        output_dir: str. Receives `checkpoints/`, `history.jsonl` (with
            `train.csv_log`, `history.csv`; with `train.tensorboard`,
            `tensorboard/`), `recipe.json` and, at the end, the student
            preset in `preset/`.
        verbose: `fit` verbosity (of process 0; the others are quiet).
        callbacks: optional list of extra Keras callbacks for `fit` (e.g. a
            progress bar).

    Returns:
        The trained `TIPSPretrainer`.

    Raises:
        ValueError: before anything is built, for a placement the processes
            and devices cannot follow (a per-process batch the devices do
            not divide, a model-parallel size that does not divide the
            devices, a process id out of range, fewer data shards than
            processes).
        CheckpointError: no intact checkpoint to resume from, or one of
            another configuration.
    """
    recipe.validate()
    if recipe.train.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ValueError(
            "train.tensorboard writes TensorBoard logs, which needs the "
            "tensorboard package: pip install 'keras-tips[tensorboard]'."
        )
    process, processes = distribution_lib.initialize_processes()
    dist = make_distribution(recipe.train.distribution)
    distribution_lib.check_placement(dist, recipe.data.pipeline.batch_size)
    if processes > 1 and recipe.train.distribution.startswith("model_parallel"):
        raise ValueError(
            "train.distribution=model_parallel on several processes: the "
            "weights would be split across processes, and this loop writes "
            "checkpoints of weights that each process holds whole. Use "
            "data_parallel across processes (or one process)."
        )
    recipe.data.pipeline.shard()  # Fewer shards than processes: refused now.
    with dist.scope() if dist is not None else contextlib.nullcontext():
        return _pretrain(
            recipe, output_dir, verbose, list(callbacks or ()), process, processes
        )


def _pretrain(recipe, output_dir, verbose, callbacks, process, processes):
    from keras_tips.models.tips_image_converter import TIPSImageConverter
    from keras_tips.models.tips_preprocessor import TIPSPreprocessor

    writer = process == 0
    os.makedirs(output_dir, exist_ok=True)
    if writer:
        write_atomically(
            os.path.join(output_dir, "recipe.json"),
            json.dumps(recipe.to_dict(), indent=1, default=str),
        )
    keras.utils.set_random_seed(recipe.train.seed)
    init_model = load_init_preset(recipe)
    tokenizer = build_tokenizer(recipe, output_dir, init_model)
    pretrainer = build_pretrainer(recipe, tokenizer.vocabulary_size(), init_model)
    del init_model  # Its weights are in the student now.
    checkpoints = os.path.join(output_dir, "checkpoints")
    found = find_intact_checkpoint(
        checkpoints, lambda state: _data_position(checkpoints, state, processes)
    )
    step = 0 if found is None else int(found[1]["step"])
    check_processes_agree(step, "the checkpoint step to resume from")
    if found is not None:
        load_checkpoint(pretrainer, *found)
    train = recipe.train
    interval, window = train.steps_per_checkpoint, train.log_every_steps
    if step % interval:
        raise CheckpointError(
            f"Checkpoint step {step} is not a multiple of {interval} "
            "(train.steps_per_checkpoint): resume with the interval the run "
            "was started with, or start a new output directory."
        )
    history = os.path.join(output_dir, HISTORY_FILE)
    loggers = []
    if writer:
        _truncate_history(history, step)
        # History first: a kill between it and the checkpoint leaves a record
        # newer than the checkpoint, dropped on resume; the other order could
        # lose the record of a saved interval.
        loggers.append(_HistoryWriter(history))
        if train.csv_log:
            path = os.path.join(output_dir, CSV_LOG_FILE)
            _truncate_csv_log(path, step // window)
            loggers.append(keras.callbacks.CSVLogger(path, append=True))
        if train.tensorboard:
            loggers.append(
                keras.callbacks.TensorBoard(
                    os.path.join(output_dir, TENSORBOARD_DIR),
                    update_freq="epoch",
                    write_graph=False,
                )
            )
    keep = train.keep_checkpoints
    pipeline = build_pipeline(recipe, tokenizer)
    try:
        if found is not None:
            pipeline.set_state(
                _data_position(checkpoints, found[1], processes, process)
            )
            logger.info("Resumed from step %d.", step)
        if step < train.total_steps:
            batches = _TrackedBatches(pipeline, step)

            def save_position(saved_step):
                # Every process's position is on disk before process 0
                # publishes the weights of the same step.
                save_data_position(
                    checkpoints, saved_step, batches.state_for(saved_step),
                    process, keep,
                )
                sync_processes(f"data positions of step {saved_step}")

            pretrainer.fit(
                iter(batches),
                steps_per_epoch=window,
                epochs=train.total_steps // window,
                initial_epoch=step // window,
                verbose=verbose if writer else 0,
                callbacks=[
                    nonfinite_guard(train.nonfinite),
                    *loggers,
                    _IntervalCheckpoint(
                        checkpoints,
                        interval // window,
                        keep=keep,
                        before_save=save_position,
                        writes_weights=writer,
                    ),
                ]
                + callbacks,
            )
    finally:
        pipeline.close()
    if writer:
        size = recipe.data.image_size
        preprocessor = TIPSPreprocessor(tokenizer, TIPSImageConverter((size, size)))
        with distribution_lib.outside_distribution():
            pretrainer.export_student(os.path.join(output_dir, "preset"), preprocessor)
    sync_processes("preset exported")
    return pretrainer


def _data_position(checkpoints, state, processes, process=None):
    """The data position of `process` saved with a checkpoint; without a
    `process`, checks that every process's is there.

    Checkpoints written before positions were kept per process hold the
    single process's position in their state (`extra["data"]`).

    Raises:
        CheckpointError: a position is missing or damaged.
    """
    step = state["step"]
    legacy = state.get("extra", {}).get("data")
    targets = range(processes) if process is None else [process]
    position = None
    for index in targets:
        try:
            position = read_data_position(checkpoints, step, index)
        except CheckpointError:
            if processes == 1 and legacy is not None:
                position = legacy
                continue
            raise
    return position
