"""The grain input pipeline of TIPS pretraining.

Graph (the part before the batch step runs in each worker process when
`worker_count > 0`):

```
source -> shard slice -> shuffle -> repeat -> decode + multi-crop + mask
       -> count problems, drop bad records, batch  |  mp_prefetch
main process: add counts to `DataStats`, check the bad fraction, tokenize
```

Batch contract (numpy):

```
"global_images":          float32 (B, G, G, 3) in [0, 1]
"local_images":           float32 (B, N_local, S, S, 3) in [0, 1]
                          (only when N_local > 0)
"patch_mask":             bool (B, (G // 14) ** 2), True = masked patch,
                          row-major over the patch grid
"web_token_ids":          int32 (B, T)
"web_padding_mask":       bool (B, T), True = real token
"synthetic_token_ids":    int32 (B, T)
"synthetic_padding_mask": bool (B, T)
"has_web":                bool (B,)   False where the caption was unusable
"has_synthetic":          bool (B,)
```

Problem counts are carried with each batch out of the workers and added up
in the main process, so `pipeline.stats` is complete with any number of
workers.
"""

import collections
import dataclasses
import logging

import grain
import numpy as np

from keras_tips.data import stats as stats_lib
from keras_tips.data.decoding import DEFAULT_MAX_IMAGE_PIXELS
from keras_tips.data.decoding import ImageDecodeError
from keras_tips.data.decoding import clean_caption
from keras_tips.data.decoding import decode_image
from keras_tips.data.masking import PatchMaskConfig
from keras_tips.data.masking import PatchMasker
from keras_tips.data.records import make_record
from keras_tips.data.transforms import AugmentationConfig
from keras_tips.data.transforms import EvalTransform
from keras_tips.data.transforms import MultiCropTransform
from keras_tips.data.transforms import swap_left_right

logger = logging.getLogger("keras_tips.data")

# Keys of the problem counts, and of the names of a few skipped records,
# carried next to a batch out of the workers.
COUNTS_KEY = "_record_counts"
SKIPPED_KEY = "_skipped_records"
# Skipped records named per element: enough to find examples of each kind.
_MAX_SKIPPED_NAMED = 8
BATCH_KEYS = (
    "global_images",
    "local_images",
    "patch_mask",
    "web_token_ids",
    "web_padding_mask",
    "synthetic_token_ids",
    "synthetic_padding_mask",
    "has_web",
    "has_synthetic",
)
# A worker that has read this many records without finishing a batch sends
# their counts alone, so a dataset with no usable record is reported instead
# of waiting forever.
_COUNTS_ONLY_INTERVAL = 64


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Configuration of the pretraining input pipeline.

    Attributes:
        batch_size: int. Examples per batch (per process).
        global_image_size: int. Side G of the global crop, a multiple of
            `patch_size`.
        local_crop_count: int. Local crops per example (0 for none).
        local_image_size: int. Side S of the local crops.
        patch_size: int. ViT patch size (14); sets the mask grid G // 14.
        mask_ratio: float in [0, 1]. Fraction of masked patches.
        mask_mode: "random" or "block".
        mask_probability: float. Probability that an example is masked at all.
        augmentation: `AugmentationConfig`.
        training: bool. False: resize + centre crop only, no local crops,
            empty masks, no shuffle.
        eval_crop_fraction: float. Centre-crop fraction when not training.
        shuffle: bool. Shuffle the records (each epoch differently).
        seed: int. Seed of the shuffle and of every random augmentation.
        num_epochs: int or None (repeat forever).
        drop_remainder: bool. Drop the last incomplete batch.
        worker_count: int. Worker processes (0: all in this process). With
            workers, each worker builds whole batches; the data order depends
            on `worker_count` (deterministic for a given count), and a saved
            state must be restored with the same count.
        worker_buffer_size: int. Batches buffered per worker.
        read_thread_count: int. Threads decoding examples in each process.
        read_buffer_size: int. Examples buffered by those threads.
        shard_index, shard_count: ints. This process reads records
            `shard_index::shard_count` (equal shard sizes; the remainder of
            the division is dropped).
        max_image_pixels: int. Larger images are skipped unread.
        max_skipped_fraction: float or None. Stop with `ValueError` when more
            than this fraction of the first `skip_check_window` records is
            skipped. None disables the check.
        skip_check_window: int. See `max_skipped_fraction`.
        require_caption: bool. Skip records with neither caption usable.
        max_caption_chars: int. Longer captions are cut.
        include_texts: bool. Also return the caption strings
            ("web_caption", "synthetic_caption") for inspection.

    Example:
    ```python
    config = PipelineConfig(batch_size=64, global_image_size=112,
                            local_crop_count=2, local_image_size=56)
    ```
    """

    batch_size: int = 32
    global_image_size: int = 224
    local_crop_count: int = 6
    local_image_size: int = 98
    patch_size: int = 14
    mask_ratio: float = 0.75
    mask_mode: str = "random"
    mask_probability: float = 1.0
    augmentation: AugmentationConfig = dataclasses.field(
        default_factory=AugmentationConfig
    )
    training: bool = True
    eval_crop_fraction: float = 1.0
    shuffle: bool = True
    seed: int = 0
    num_epochs: int | None = None
    drop_remainder: bool = True
    worker_count: int = 0
    worker_buffer_size: int = 2
    read_thread_count: int = 1
    read_buffer_size: int = 16
    shard_index: int = 0
    shard_count: int = 1
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_skipped_fraction: float | None = 0.5
    skip_check_window: int = 200
    require_caption: bool = True
    max_caption_chars: int = 2000
    include_texts: bool = False

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(
                f"`batch_size` must be >= 1. Received: {self.batch_size}"
            )
        if self.global_image_size < self.patch_size or (
            self.global_image_size % self.patch_size
        ):
            raise ValueError(
                f"`global_image_size` ({self.global_image_size}) must be a "
                f"positive multiple of `patch_size` ({self.patch_size})."
            )
        if self.local_crop_count < 0 or self.local_image_size < 1:
            raise ValueError(
                "`local_crop_count` must be >= 0 and `local_image_size` >= 1. "
                f"Received: {self.local_crop_count}, {self.local_image_size}"
            )
        if self.num_epochs is not None and self.num_epochs < 1:
            raise ValueError(
                "`num_epochs` must be >= 1 or None. "
                f"Received: {self.num_epochs}"
            )
        if self.worker_count < 0 or self.read_thread_count < 0:
            raise ValueError(
                "`worker_count` and `read_thread_count` must be >= 0."
            )
        if not 0 <= self.shard_index < self.shard_count:
            raise ValueError(
                f"Need 0 <= shard_index < shard_count. Received: "
                f"{self.shard_index}, {self.shard_count}"
            )
        # Validates the mask settings early, with their own messages.
        self.mask_config

    @property
    def mask_config(self):
        return PatchMaskConfig(
            ratio=self.mask_ratio,
            mode=self.mask_mode,
            probability=self.mask_probability,
        )

    @property
    def patch_grid_size(self):
        return self.global_image_size // self.patch_size

    @property
    def num_patches(self):
        return self.patch_grid_size**2

    @property
    def effective_local_crop_count(self):
        return self.local_crop_count if self.training else 0


def _draft_short_side(config):
    """Smallest short side a JPEG may be decoded at without losing detail."""
    if not config.training:
        return int(
            np.ceil(config.global_image_size / config.eval_crop_fraction)
        )
    augmentation = config.augmentation
    needed = config.global_image_size / np.sqrt(
        augmentation.global_crop_scale[0]
    )
    if config.local_crop_count:
        needed = max(
            needed,
            config.local_image_size / np.sqrt(augmentation.local_crop_scale[0]),
        )
    return int(np.ceil(needed))


class SafeSource:
    """Wraps a source so an exception while reading a record never stops a run.

    Such a record is returned as `invalid_record` (counted; the first
    exception of each type is logged with its message).

    Args:
        source: a random-access source of image-text records.
    """

    def __init__(self, source):
        self.source = source
        self._logged = set()

    def __getstate__(self):
        return {"source": self.source}

    def __setstate__(self, state):
        self.source = state["source"]
        self._logged = set()

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        try:
            record = self.source[index]
        except Exception as error:  # Any source bug or I/O error.
            if type(error) not in self._logged:
                self._logged.add(type(error))
                logger.warning("Cannot read record %s: %r", index, error)
            return make_record(key=str(index), error=stats_lib.INVALID_RECORD)
        if not isinstance(record, dict):
            return make_record(key=str(index), error=stats_lib.INVALID_RECORD)
        return record


def _skipped_example(kinds, key):
    return {"skip": True, "issues": tuple(kinds), "key": key}


class PretrainingExampleTransform(grain.transforms.RandomMap):
    """Record -> training example (runs in the worker processes).

    Decodes and checks the image and captions, then makes the crops and the
    patch mask. Bad records become small "skip" examples that only carry
    their problem kinds, to be counted and dropped by the batch step.

    Args:
        config: `PipelineConfig`.
    """

    def __init__(self, config):
        self.config = config
        if config.training:
            self.crop_transform = MultiCropTransform(
                config.global_image_size,
                config.local_crop_count,
                config.local_image_size,
                config.augmentation,
            )
        else:
            self.crop_transform = EvalTransform(
                config.global_image_size, config.eval_crop_fraction
            )
        self.masker = PatchMasker(config.patch_grid_size, config.mask_config)
        self.draft_short_side = _draft_short_side(config)

    def random_map(self, record, rng):
        config = self.config
        key = record.get("key", "")
        if record.get("error"):
            return _skipped_example([record["error"]], key)
        image = record.get("image")
        if image is None:
            return _skipped_example([stats_lib.MISSING_FILE], key)
        try:
            rgb, issues = decode_image(
                image, config.max_image_pixels, self.draft_short_side
            )
        except ImageDecodeError as error:
            return _skipped_example([error.kind], key)
        issues = list(issues)
        captions = {}
        for name, field in (
            ("web", "caption"),
            ("synthetic", "synthetic_caption"),
        ):
            text, problem = clean_caption(
                record.get(field), config.max_caption_chars
            )
            if problem:
                issues.append(stats_lib.caption_kind(name, problem))
            captions[name] = text
        if config.require_caption and not (
            captions["web"] or captions["synthetic"]
        ):
            return _skipped_example(issues + [stats_lib.NO_CAPTION], key)

        if config.training:
            global_image, local_images, flipped = self.crop_transform(rgb, rng)
            patch_mask = self.masker(rng)
            if flipped and config.augmentation.swap_left_right_on_flip:
                captions = {k: swap_left_right(v) for k, v in captions.items()}
        else:
            global_image = self.crop_transform(rgb)
            local_images = None
            patch_mask = np.zeros(config.num_patches, dtype=bool)
        example = {
            "skip": False,
            "issues": tuple(issues),
            "key": key,
            "global_images": global_image,
            "patch_mask": patch_mask,
            "web_caption": captions["web"],
            "synthetic_caption": captions["synthetic"],
            "has_web": bool(captions["web"]),
            "has_synthetic": bool(captions["synthetic"]),
        }
        if config.effective_local_crop_count:
            example["local_images"] = local_images
        return example


def stack_examples(examples):
    """Stacks training examples into a batch (captions stay lists)."""
    batch = {
        "global_images": np.stack([e["global_images"] for e in examples]),
        "patch_mask": np.stack([e["patch_mask"] for e in examples]),
        "has_web": np.array([e["has_web"] for e in examples], dtype=bool),
        "has_synthetic": np.array(
            [e["has_synthetic"] for e in examples], dtype=bool
        ),
        "web_caption": [e["web_caption"] for e in examples],
        "synthetic_caption": [e["synthetic_caption"] for e in examples],
    }
    if "local_images" in examples[0]:
        batch["local_images"] = np.stack([e["local_images"] for e in examples])
    return batch


class CountingBatchIterDataset(grain.IterDataset):
    """Counts record problems, drops skipped examples and batches the rest.

    Each output element is a batch dict with the problem counts of every
    record read for it under `COUNTS_KEY` (records seen, skipped, and one
    entry per problem kind), and the (kind, key) of the first few skipped
    ones under `SKIPPED_KEY`. After `_COUNTS_ONLY_INTERVAL` records without a
    usable one, an element with the counts alone is emitted.

    Its state is its parent's: a batch is only returned whole, so no example
    is ever held between two elements.

    Args:
        parent: `IterDataset` of examples from `PretrainingExampleTransform`.
        batch_size: int.
        drop_remainder: bool.
    """

    def __init__(self, parent, batch_size, drop_remainder=True):
        super().__init__(parent)
        self.batch_size = batch_size
        self.drop_remainder = drop_remainder

    def __iter__(self):
        return _CountingBatchIterator(
            self._parent.__iter__(), self.batch_size, self.drop_remainder
        )

    def __str__(self):
        return f"CountingBatchIterDataset(batch_size={self.batch_size})"


class _CountingBatchIterator(grain.DatasetIterator):
    def __init__(self, parent, batch_size, drop_remainder):
        super().__init__(parent)
        self._batch_size = batch_size
        self._drop_remainder = drop_remainder
        self._exhausted = False

    def __next__(self):
        if self._exhausted:
            raise StopIteration
        counts = collections.Counter()
        skipped = []
        examples = []
        while len(examples) < self._batch_size:
            try:
                example = next(self._parent)
            except StopIteration:
                self._exhausted = True
                break
            counts[stats_lib.RECORDS_SEEN] += 1
            counts.update(example["issues"])
            if example["skip"]:
                counts[stats_lib.RECORDS_SKIPPED] += 1
                if len(skipped) < _MAX_SKIPPED_NAMED:
                    skipped.append((example["issues"][-1], example["key"]))
                if (
                    not examples
                    and counts[stats_lib.RECORDS_SEEN] >= _COUNTS_ONLY_INTERVAL
                ):
                    return {COUNTS_KEY: dict(counts), SKIPPED_KEY: skipped}
                continue
            examples.append(example)
        if self._exhausted and (
            not examples
            or (self._drop_remainder and len(examples) < self._batch_size)
        ):
            if counts:
                # The counts of the last records still reach the main process.
                return {COUNTS_KEY: dict(counts), SKIPPED_KEY: skipped}
            raise StopIteration
        batch = stack_examples(examples)
        batch[COUNTS_KEY] = dict(counts)
        batch[SKIPPED_KEY] = skipped
        return batch

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state):
        self._parent.set_state(state)
        self._exhausted = False

    def __str__(self):
        return f"CountingBatchIterator(batch_size={self._batch_size})"


def build_example_dataset(source, config):
    """The per-example part of the pipeline as a `grain.MapDataset`.

    Shards, shuffles, repeats and transforms (decode, crops, mask). Useful on
    its own to look at single examples: `build_example_dataset(s, c)[0]`.

    Args:
        source: a random-access source of image-text records.
        config: `PipelineConfig`.

    Returns:
        `grain.MapDataset` of examples (see `PretrainingExampleTransform`).
    """
    num_records = len(source)
    per_shard = num_records // config.shard_count
    if per_shard == 0:
        raise ValueError(
            f"The source has {num_records} records, fewer than the "
            f"{config.shard_count} shards."
        )
    dataset = grain.MapDataset.source(SafeSource(source))
    if config.shard_count > 1:
        dataset = dataset[
            config.shard_index : per_shard
            * config.shard_count : config.shard_count
        ]
    if config.shuffle and config.training:
        dataset = dataset.shuffle(seed=_derived_seed(config.seed, 0))
    if config.num_epochs != 1:
        dataset = dataset.repeat(config.num_epochs)
    # The shard index is folded into the augmentation seed so shards do not
    # draw the same crops for their i-th examples.
    return dataset.random_map(
        PretrainingExampleTransform(config),
        seed=_derived_seed(config.seed, 1, config.shard_index),
    )


def build_batch_dataset(source, config):
    """The grain part of the pipeline: batches with problem counts.

    Args:
        source: a random-access source of image-text records.
        config: `PipelineConfig`.

    Returns:
        `grain.IterDataset` of batch dicts (images, masks, caption strings and
        `COUNTS_KEY`), prefetched by `config.worker_count` processes.
    """
    dataset = build_example_dataset(source, config).to_iter_dataset(
        grain.ReadOptions(
            num_threads=config.read_thread_count,
            prefetch_buffer_size=config.read_buffer_size,
        )
    )
    dataset = CountingBatchIterDataset(
        dataset, config.batch_size, drop_remainder=config.drop_remainder
    )
    if config.worker_count > 0:
        dataset = dataset.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=config.worker_count,
                per_worker_buffer_size=config.worker_buffer_size,
            )
        )
    return dataset


def _derived_seed(*values):
    return int(
        np.random.SeedSequence([int(v) for v in values]).generate_state(1)[0]
    )


def _as_owned_array(value):
    # Batches from workers arrive in grain's shared-memory arrays (an ndarray
    # subclass); a plain copy lets that memory be released now instead of
    # whenever the caller drops the batch.
    if type(value) is np.ndarray:
        return value
    return np.array(value, copy=True)


def _mark_absl_flags_parsed():
    """grain's worker processes read absl flags, which must count as parsed."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class PretrainingPipeline:
    """Iterator of pretraining batches (see the module docstring).

    Args:
        source: a random-access source of image-text records
            (`JsonlImageTextSource`, `ArrayRecordImageTextSource`,
            `ShapesDataset(...).image_text_source()`, ...).
        config: `PipelineConfig`.
        text_tokenizer: callable `texts: list[str] -> (token_ids int32
            (B, T), padding_mask bool (B, T))`, e.g.
            `TIPSTokenizer(...).tokenize_numpy`. It runs in the main process,
            so it does not need to be picklable.

    Example:
    ```python
    tokenizer = TIPSTokenizer(proto="tokenizer.model", sequence_length=64)
    config = PipelineConfig(batch_size=32, global_image_size=112,
                            local_crop_count=2, local_image_size=56,
                            worker_count=2)
    pipeline = PretrainingPipeline(source, config, tokenizer.tokenize_numpy)
    with pipeline as batches:
        batch = next(batches)
        state = batches.get_state()  # save it with the model checkpoint
    # Later: a new pipeline, `set_state(state)`, continues with the next batch.
    print(batches.stats.summary())
    ```
    """

    def __init__(self, source, config=None, text_tokenizer=None):
        if text_tokenizer is None or not callable(text_tokenizer):
            raise ValueError(
                "`text_tokenizer` must be a callable list[str] -> (token_ids, "
                f"padding_mask). Received: {text_tokenizer!r}"
            )
        self.source = source
        self.config = config or PipelineConfig()
        self.text_tokenizer = text_tokenizer
        self.dataset = build_batch_dataset(source, self.config)
        self.stats = stats_lib.DataStats()
        self._checker = stats_lib.BadRecordChecker(
            self.config.max_skipped_fraction, self.config.skip_check_window
        )
        self._iterator = None
        self._closed = False
        self._summary_logged = False

    def _grain_iterator(self):
        if self._closed:
            raise ValueError("This pipeline is closed.")
        if self._iterator is None:
            if self.config.worker_count > 0:
                _mark_absl_flags_parsed()
            self._iterator = iter(self.dataset)
        return self._iterator

    def __iter__(self):
        return self

    def __next__(self):
        iterator = self._grain_iterator()
        while True:
            try:
                element = next(iterator)
            except StopIteration:
                self._checker.check(self.stats, finished=True)
                self._log_summary()
                raise
            self.stats.update(element.pop(COUNTS_KEY))
            for kind, key in element.pop(SKIPPED_KEY):
                if self.stats.add_skipped_example(kind, str(key)):
                    logger.warning("Skipping record %r: %s.", str(key), kind)
            try:
                self._checker.check(self.stats)
            except ValueError:
                logger.error("Input data: %s", self.stats.summary())
                raise
            if "global_images" in element:
                return self._finish_batch(element)

    def _finish_batch(self, element):
        batch_size = len(element["web_caption"])
        token_ids, padding_mask = self.text_tokenizer(
            element["web_caption"] + element["synthetic_caption"]
        )
        token_ids = np.asarray(token_ids)
        padding_mask = np.asarray(padding_mask)
        if (
            token_ids.ndim != 2
            or token_ids.shape[0] != 2 * batch_size
            or padding_mask.shape != token_ids.shape
        ):
            raise ValueError(
                "`text_tokenizer` must return (token_ids, padding_mask) of "
                f"shape (num_texts, T). Received shapes {token_ids.shape} and "
                f"{padding_mask.shape} for {2 * batch_size} texts."
            )
        token_ids = token_ids.astype(np.int32)
        padding_mask = padding_mask.astype(bool)
        batch = {
            "global_images": _as_owned_array(element["global_images"]),
            "patch_mask": _as_owned_array(element["patch_mask"]),
            "web_token_ids": token_ids[:batch_size],
            "web_padding_mask": padding_mask[:batch_size],
            "synthetic_token_ids": token_ids[batch_size:],
            "synthetic_padding_mask": padding_mask[batch_size:],
            "has_web": _as_owned_array(element["has_web"]),
            "has_synthetic": _as_owned_array(element["has_synthetic"]),
        }
        if "local_images" in element:
            batch["local_images"] = _as_owned_array(element["local_images"])
        if self.config.include_texts:
            batch["web_caption"] = np.array(
                element["web_caption"], dtype=object
            )
            batch["synthetic_caption"] = np.array(
                element["synthetic_caption"], dtype=object
            )
        return batch

    def get_state(self):
        """The iterator state after the last returned batch (JSON-friendly).

        Returns:
            dict with the grain iterator state and the problem counts.
        """
        return {
            "grain_iterator": self._grain_iterator().get_state(),
            "data_stats": self.stats.to_dict(),
            "skip_check_done": self._checker.checked,
        }

    def set_state(self, state):
        """Restores `get_state()`: the next batch is the one after it.

        A state saved with workers must be restored with the same
        `worker_count` (each worker has its own position).
        """
        self._grain_iterator().set_state(state["grain_iterator"])
        self.stats = stats_lib.DataStats.from_dict(state.get("data_stats", {}))
        self._checker.checked = bool(state.get("skip_check_done", False))

    def _log_summary(self):
        if not self._summary_logged and self.stats.records_seen:
            self._summary_logged = True
            logger.info("Input data: %s", self.stats.summary())

    def close(self):
        """Stops the worker processes and logs the problem counts."""
        if self._closed:
            return
        self._closed = True
        self._log_summary()
        if self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()
        self._iterator = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    def __del__(self):
        # Best effort only: grain's workers need an explicit close to stop
        # cleanly, which `close()` / the context manager do.
        try:
            if not self._closed and self._iterator is not None:
                self._iterator.close()
        except Exception:
            pass
