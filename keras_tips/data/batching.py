"""The batch step of the pipeline: count record problems, drop bad
examples, stack the rest.

It runs where the examples are made (in each worker process when the
pipeline has workers), so the problem counts travel with the batches to the
main process and `DataStats` is complete with any number of workers.
"""

import collections

import grain
import numpy as np

from keras_tips.data import stats as stats_lib

# Keys of the problem counts, and of the names of a few skipped records,
# carried next to a batch out of the workers.
COUNTS_KEY = "_record_counts"
SKIPPED_KEY = "_skipped_records"
# Skipped records named per element: enough to find examples of each kind.
_MAX_SKIPPED_NAMED = 8
# A worker that has read this many records without finishing a batch sends
# their counts alone, so a dataset with no usable record is reported instead
# of waiting forever.
_COUNTS_ONLY_INTERVAL = 64


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
    for key in ("local_images", "contrastive_images"):
        if key in examples[0]:
            batch[key] = np.stack([e[key] for e in examples])
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

    Example:
    ```python
    batches = CountingBatchIterDataset(examples.to_iter_dataset(), 32)
    ```
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
