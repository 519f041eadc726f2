"""Record problem kinds and the counters that report them.

A record can have several problems. Each has a kind:

- skip kinds: the record cannot give a correct training example and is
  dropped (counted, never silently);
- conversion kinds: the image was converted to 8-bit RGB and kept;
- caption kinds: one caption is missing or unusable; the record is kept with
  `has_web` / `has_synthetic` False for that caption.
"""

import dataclasses
import logging

logger = logging.getLogger("keras_tips.data")

# Skip kinds.
MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
UNREADABLE_IMAGE = "unreadable_image"
TRUNCATED_IMAGE = "truncated_image"
TOO_LARGE_IMAGE = "too_large_image"
INVALID_RECORD = "invalid_record"
NO_CAPTION = "no_caption"
SKIP_KINDS = (
    MISSING_FILE,
    EMPTY_FILE,
    UNREADABLE_IMAGE,
    TRUNCATED_IMAGE,
    TOO_LARGE_IMAGE,
    INVALID_RECORD,
    NO_CAPTION,
)

# Conversion kinds.
CONVERTED_GRAYSCALE = "converted_grayscale"
CONVERTED_ALPHA = "converted_alpha"
CONVERTED_16BIT = "converted_16bit"
CONVERTED_OTHER_MODE = "converted_other_mode"
CONVERSION_KINDS = (
    CONVERTED_GRAYSCALE,
    CONVERTED_ALPHA,
    CONVERTED_16BIT,
    CONVERTED_OTHER_MODE,
)


def caption_kind(caption_name, problem):
    """Names a caption problem, e.g. `("web", "empty")` -> "web_caption_empty".

    Args:
        caption_name: "web" or "synthetic".
        problem: "missing", "empty" or "not_utf8".
    """
    return f"{caption_name}_caption_{problem}"


CAPTION_KINDS = tuple(
    caption_kind(name, problem)
    for name in ("web", "synthetic")
    for problem in ("missing", "empty", "not_utf8")
)
ALL_KINDS = SKIP_KINDS + CONVERSION_KINDS + CAPTION_KINDS

# Totals carried next to the kinds in count dicts.
RECORDS_SEEN = "records_seen"
RECORDS_SKIPPED = "records_skipped"


@dataclasses.dataclass
class DataStats:
    """Counts of the records a pipeline has read, by problem kind.

    Attributes:
        records_seen: int. Records read from the source.
        records_skipped: int. Records dropped (any skip kind).
        counts: dict kind -> int for every problem kind met (a skipped
            record with several problems counts once per kind).
        skipped_examples: dict skip kind -> keys of the first few records
            skipped for it (to find them in the data).

    Example:
    ```python
    stats = DataStats()
    stats.update({"records_seen": 10, "records_skipped": 1, "missing_file": 1})
    stats.records_kept  # 9
    print(stats.summary())
    ```
    """

    records_seen: int = 0
    records_skipped: int = 0
    counts: dict = dataclasses.field(default_factory=dict)
    skipped_examples: dict = dataclasses.field(default_factory=dict)
    max_examples_per_kind = 3

    @property
    def records_kept(self):
        return self.records_seen - self.records_skipped

    @property
    def skipped_fraction(self):
        return (
            self.records_skipped / self.records_seen
            if self.records_seen
            else 0.0
        )

    def update(self, counts):
        """Adds a count dict (`records_seen`, `records_skipped`, kinds)."""
        for name, value in counts.items():
            value = int(value)
            if name == RECORDS_SEEN:
                self.records_seen += value
            elif name == RECORDS_SKIPPED:
                self.records_skipped += value
            elif value:
                self.counts[name] = self.counts.get(name, 0) + value

    def add_skipped_example(self, kind, key):
        """Remembers `key` as skipped for `kind`; True if `kind` is new."""
        is_new = kind not in self.skipped_examples
        keys = self.skipped_examples.setdefault(kind, [])
        if len(keys) < self.max_examples_per_kind and key not in keys:
            keys.append(key)
        return is_new

    def skip_counts(self):
        """dict skip kind -> count, only the kinds met."""
        return {k: v for k, v in sorted(self.counts.items()) if k in SKIP_KINDS}

    def to_dict(self):
        """A JSON-friendly dict (also used in pipeline checkpoints)."""
        return {
            RECORDS_SEEN: self.records_seen,
            RECORDS_SKIPPED: self.records_skipped,
            "counts": dict(sorted(self.counts.items())),
            "skipped_examples": dict(sorted(self.skipped_examples.items())),
        }

    @classmethod
    def from_dict(cls, values):
        return cls(
            records_seen=int(values.get(RECORDS_SEEN, 0)),
            records_skipped=int(values.get(RECORDS_SKIPPED, 0)),
            counts={k: int(v) for k, v in values.get("counts", {}).items()},
            skipped_examples={
                k: list(v)
                for k, v in values.get("skipped_examples", {}).items()
            },
        )

    def summary(self):
        """One line: totals and every problem kind with its count."""
        line = (
            f"{self.records_seen} records read, {self.records_kept} kept, "
            f"{self.records_skipped} skipped"
        )
        if self.counts:
            kinds = ", ".join(
                f"{k}={v}" for k, v in sorted(self.counts.items())
            )
            line += f" ({kinds})"
        return line


class BadRecordChecker:
    """Stops a run whose data is mostly unusable, with a clear error.

    The skipped fraction is checked once, when `window` records have been seen
    (or when the data ends before that). A dataset where no record at all is
    usable is stopped after `window` records even when the fraction check is
    disabled, since such a run could never yield a batch.

    Args:
        max_skipped_fraction: float in [0, 1] or None (no fraction check).
        window: int. Number of first records the fraction is taken over.
    """

    def __init__(self, max_skipped_fraction=0.5, window=200):
        if (
            max_skipped_fraction is not None
            and not 0 <= max_skipped_fraction <= 1
        ):
            raise ValueError(
                "`max_skipped_fraction` must be in [0, 1] or None. "
                f"Received: {max_skipped_fraction}"
            )
        if window < 1:
            raise ValueError(f"`window` must be >= 1. Received: {window}")
        self.max_skipped_fraction = max_skipped_fraction
        self.window = window
        self.checked = False

    def check(self, stats, finished=False):
        """Raises `ValueError` if `stats` shows mostly bad data."""
        if (
            stats.records_seen
            and stats.records_kept == 0
            and (finished or stats.records_seen >= self.window)
        ):
            raise ValueError(
                f"No usable record in the first {stats.records_seen} records "
                f"of the dataset: {stats.summary()}."
            )
        if self.checked or self.max_skipped_fraction is None:
            return
        if stats.records_seen < self.window and not finished:
            return
        self.checked = True
        if (
            stats.records_seen
            and stats.skipped_fraction > self.max_skipped_fraction
        ):
            raise ValueError(
                f"The dataset is mostly bad: {stats.records_skipped} of the "
                f"first {stats.records_seen} records "
                f"({100 * stats.skipped_fraction:.1f} %) were skipped, more "
                f"than the allowed {100 * self.max_skipped_fraction:.1f} %. "
                f"Skipped by kind: {stats.skip_counts()}, e.g. "
                f"{stats.skipped_examples}. {stats.summary()}. "
                "Fix the data or raise `PipelineConfig.max_skipped_fraction`."
            )
