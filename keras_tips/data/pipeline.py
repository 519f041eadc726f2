"""The grain input pipeline of TIPS pretraining: the dataset graph and the
iterator of batches.

Graph (the part before the batch step runs in each worker process when
`worker_count > 0`):

```
source -> shard slice -> shuffle -> repeat
       -> decode + multi-crop + mask          (example_transform.py)
       -> count problems, drop bad records, batch      (batching.py)
       |  mp_prefetch
main process: add counts to `DataStats`, check the bad fraction, tokenize
```

Its settings are a `PipelineConfig` (pipeline_config.py).

Batch contract (numpy):

```
"global_images":          float32 (B, G, G, 3) in [0, 1]
"local_images":           float32 (B, N_local, S, S, 3) in [0, 1]
                          (only when N_local > 0)
"contrastive_images":     float32 (B, G, G, 3) in [0, 1]: the crop paired
                          with the captions (only when training with a
                          separate contrastive crop; without it, the
                          contrastive loss uses "global_images")
"patch_mask":             bool (B, (G // patch_size) ** 2), True = masked
                          patch,
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

import logging

import grain
import numpy as np

from keras_tips.data import stats as stats_lib
from keras_tips.data.batching import COUNTS_KEY
from keras_tips.data.batching import SKIPPED_KEY
from keras_tips.data.batching import CountingBatchIterDataset
from keras_tips.data.example_transform import PretrainingExampleTransform
from keras_tips.data.pipeline_config import PipelineConfig
from keras_tips.data.records import make_record

logger = logging.getLogger("keras_tips.data")

BATCH_KEYS = (
    "global_images",
    "local_images",
    "contrastive_images",
    "patch_mask",
    "web_token_ids",
    "web_padding_mask",
    "synthetic_token_ids",
    "synthetic_padding_mask",
    "has_web",
    "has_synthetic",
)


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


def build_example_dataset(source, config):
    """The per-example part of the pipeline as a `grain.MapDataset`.

    Shards, shuffles, repeats and transforms (decode, crops, mask). Useful on
    its own to look at single examples: `build_example_dataset(s, c)[0]`.

    Args:
        source: a random-access source of image-text records.
        config: a complete `PipelineConfig`.

    Returns:
        `grain.MapDataset` of examples (see `PretrainingExampleTransform`).
    """
    config.check_complete()
    shard_index, shard_count = config.shard()
    num_records = len(source)
    per_shard = num_records // shard_count
    if per_shard == 0:
        raise ValueError(
            f"The source has {num_records} records, fewer than the "
            f"{shard_count} shards (one per process unless "
            "data.pipeline.shard_count is set): each shard needs at least "
            "one record."
        )
    dataset = grain.MapDataset.source(SafeSource(source))
    if shard_count > 1:
        dataset = dataset[shard_index : per_shard * shard_count : shard_count]
    if config.shuffle and config.training:
        dataset = dataset.shuffle(seed=_derived_seed(config.seed, 0))
    if config.num_epochs != 1:
        dataset = dataset.repeat(config.num_epochs)
    # The shard index is folded into the augmentation seed so shards do not
    # draw the same crops for their i-th examples.
    return dataset.random_map(
        PretrainingExampleTransform(config),
        seed=_derived_seed(config.seed, 1, shard_index),
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
        for key in ("local_images", "contrastive_images"):
            if key in element:
                batch[key] = _as_owned_array(element[key])
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
