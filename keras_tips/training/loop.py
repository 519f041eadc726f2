"""`pretrain`: a whole, resumable TIPS pretraining run from a recipe.

files -> grain pipeline -> `TIPSPretrainer.fit` -> atomic checkpoints ->
exported `TIPSModel` preset. Each "epoch" of `fit` is one checkpoint interval;
a run that is killed and started again with the same command restores the
latest complete checkpoint (weights, teacher, centres, optimizer, step) and
the data iterator state, and continues on the next unseen batch.
"""

import contextlib
import dataclasses
import json
import logging
import os

import keras

from keras_tips.atomic_files import write_atomically
from keras_tips.errors import CheckpointError
from keras_tips.training.checkpoint import PeriodicCheckpoint
from keras_tips.training.checkpoint import restore_checkpoint
from keras_tips.training.nonfinite import SkipNonFiniteUpdates
from keras_tips.training.nonfinite import nonfinite_guard

logger = logging.getLogger(__name__)

HISTORY_FILE = "history.jsonl"


def make_distribution(spec):
    """The `keras.distribution` of a `TrainConfig.distribution` string (None
    for "none"). It is applied as a scope around one run, so it does not leak
    into whatever the process does next."""
    from keras_tips.training import distribution

    if spec in (None, "", "none"):
        return None
    if spec == "data_parallel":
        dist = distribution.data_parallel()
    elif spec.startswith("model_parallel:"):
        dist = distribution.model_parallel(int(spec.split(":", 1)[1]))
    else:
        raise ValueError(
            "train.distribution must be 'none', 'data_parallel' or "
            f"'model_parallel:N'; received {spec!r}."
        )
    return dist


def build_tokenizer(recipe, output_dir=None):
    """The recipe's tokenizer; for shapes, a vocabulary built on first use
    (kept in `output_dir/vocabulary.spm` when `output_dir` is given)."""
    from keras_tips.data.vocabulary import shapes_vocabulary
    from keras_tips.models.tips_tokenizer import TIPSTokenizer

    data = recipe.data
    if data.tokenizer:
        proto = data.tokenizer
    else:
        path = os.path.join(output_dir, "vocabulary.spm") if output_dir else None
        proto = shapes_vocabulary(
            path,
            seed=data.seed,
            multi_granularity_captions=data.multi_granularity_captions,
        )
    return TIPSTokenizer(proto=proto, sequence_length=data.sequence_length)


def build_source(data):
    """The recipe's random-access source of image-caption records."""
    if data.source == "shapes":
        from keras_tips.data.shapes import ShapesDataset

        dataset = ShapesDataset(
            "train", data.num_examples, data.image_size, seed=data.seed,
            max_objects=data.max_objects,
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


def build_pretrainer(recipe, vocabulary_size):
    """Student backbone + TIPSPretrainer + compiled optimizer, from a
    recipe (resolved here if it is not yet: the position grid, the text
    length and the optimizer's schedule length follow their sources)."""
    from keras_tips.models.tips_backbone import TIPSBackbone
    from keras_tips.models.tips_text_encoder import TIPSTextEncoder
    from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder
    from keras_tips.training.optimizers import build_optimizer
    from keras_tips.training.pretrainer import TIPSPretrainer

    recipe.resolve()
    model = recipe.model
    text = dict(model.text, vocabulary_size=vocabulary_size)
    backbone = TIPSBackbone(
        TIPSVisionEncoder(**model.vision, name="vision_encoder"),
        TIPSTextEncoder(**text, name="text_encoder"),
        temperature=model.temperature,
        dtype=model.dtype,
    )
    pretrainer = TIPSPretrainer(
        backbone,
        total_steps=recipe.train.total_steps,
        **dataclasses.asdict(recipe.objective),
    )
    optimizer = build_optimizer(recipe.optimizer)
    if recipe.train.nonfinite == "skip":
        optimizer = SkipNonFiniteUpdates(optimizer)
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
    """Appends each interval's logs to history.jsonl (survives resumes)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.step_counter))
        record = {"step": step, **{k: float(v) for k, v in (logs or {}).items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


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
    """The logged metrics of a run: a list of dicts, one per interval."""
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


def pretrain(recipe, output_dir, verbose="auto"):
    """Runs (or resumes) a pretraining recipe and exports the student.

    The recipe's `train.distribution` applies inside this call only.

    Args:
        recipe: a validated `PretrainRecipe`.
        output_dir: str. Receives `checkpoints/`, `history.jsonl`,
            `recipe.json` and, at the end, the student preset in `preset/`.
        verbose: `fit` verbosity.

    Returns:
        The trained `TIPSPretrainer`.
    """
    recipe.validate()
    dist = make_distribution(recipe.train.distribution)
    with dist.scope() if dist is not None else contextlib.nullcontext():
        return _pretrain(recipe, output_dir, verbose)


def _pretrain(recipe, output_dir, verbose):
    from keras_tips.models.tips_image_converter import TIPSImageConverter
    from keras_tips.models.tips_preprocessor import TIPSPreprocessor

    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "recipe.json"), "w", encoding="utf-8") as f:
        json.dump(recipe.to_dict(), f, indent=1, default=str)
    keras.utils.set_random_seed(recipe.train.seed)
    tokenizer = build_tokenizer(recipe, output_dir)
    pretrainer = build_pretrainer(recipe, tokenizer.vocabulary_size())
    checkpoints = os.path.join(output_dir, "checkpoints")
    state = restore_checkpoint(pretrainer, checkpoints)
    step = 0 if state is None else int(state["step"])
    interval = recipe.train.steps_per_checkpoint
    if step % interval:
        raise CheckpointError(
            f"Checkpoint step {step} is not a multiple of {interval} "
            "(train.steps_per_checkpoint): resume with the interval the run "
            "was started with, or start a new output directory."
        )
    history = os.path.join(output_dir, HISTORY_FILE)
    _truncate_history(history, step)
    pipeline = build_pipeline(recipe, tokenizer)
    try:
        if state is not None:
            pipeline.set_state(state["extra"]["data"])
            logger.info("Resumed from step %d.", step)
        if step < recipe.train.total_steps:
            batches = _TrackedBatches(pipeline, step)
            pretrainer.fit(
                iter(batches),
                steps_per_epoch=interval,
                epochs=recipe.train.total_steps // interval,
                initial_epoch=step // interval,
                verbose=verbose,
                callbacks=[
                    nonfinite_guard(recipe.train.nonfinite),
                    # History first: a kill between the two leaves a record
                    # newer than the checkpoint, dropped on resume; the other
                    # order could lose the record of a saved interval.
                    _HistoryWriter(history),
                    PeriodicCheckpoint(
                        checkpoints, lambda s: {"data": batches.state_for(s)}
                    ),
                ],
            )
    finally:
        pipeline.close()
    size = recipe.data.image_size
    preprocessor = TIPSPreprocessor(tokenizer, TIPSImageConverter((size, size)))
    pretrainer.export_student(os.path.join(output_dir, "preset"), preprocessor)
    return pretrainer
