"""Writes a JSONL image-text folder into ArrayRecord shards.

The command line is `python -m keras_tips.data.convert` (see `convert.py`);
webdataset tar shards are written by `keras_tips.data.webdataset`.
"""

import glob
import logging
import os

from keras_tips.data import stats
from keras_tips.data.records import serialize_record
from keras_tips.data.sources import ARRAY_RECORD_SUFFIX
from keras_tips.data.sources import read_jsonl_index

logger = logging.getLogger("keras_tips.data")
# One record per group: grain reads records at random positions, and larger
# groups would decode a whole group for each read.
ARRAY_RECORD_WRITER_OPTIONS = "group_size:1"


def shard_file_name(prefix, shard_index, num_shards):
    """`{prefix}-00000-of-00008.array_record`."""
    return (
        f"{prefix}-{shard_index:05d}-of-{num_shards:05d}{ARRAY_RECORD_SUFFIX}"
    )


def prepare_shard_paths(output_dir, prefix, num_shards, overwrite):
    """The paths of `num_shards` new shards in `output_dir` (created if
    needed), after removing an earlier shard set with this prefix when
    `overwrite` is set.

    Raises:
        FileExistsError: shards with this prefix exist and `overwrite` is
            not set.
    """
    os.makedirs(output_dir, exist_ok=True)
    # Any earlier shard set with this prefix counts, whatever its shard count:
    # a folder mixing two sets would be read as one dataset.
    existing = sorted(
        glob.glob(
            os.path.join(output_dir, f"{prefix}-*-of-*{ARRAY_RECORD_SUFFIX}")
        )
    )
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} shard(s) with prefix {prefix!r} already exist in "
            f"{output_dir}, e.g. {existing[0]}. Pass `overwrite=True` "
            "(--overwrite) to replace them."
        )
    for path in existing:
        os.remove(path)
    return [
        os.path.join(output_dir, shard_file_name(prefix, i, num_shards))
        for i in range(num_shards)
    ]


def storable_synthetic_caption(synthetic_caption):
    """A synthetic caption as a shard stores it, and how many of its list
    entries were left out: entries that are not strings (None after
    reading) cannot be stored, so they are dropped and counted.

    Returns:
        `(caption, dropped)`: the caption (a string, None or a list of
        strings) and an int.
    """
    if not isinstance(synthetic_caption, list):
        return synthetic_caption, 0
    kept = [c for c in synthetic_caption if c is not None]
    return kept, len(synthetic_caption) - len(kept)


def conversion_summary(shard_paths, written, skipped, entries_dropped):
    """The summary a conversion into shards returns (see
    `write_array_record`)."""
    return {
        "shards": shard_paths,
        "records_written": written,
        "records_skipped": sum(skipped.values()),
        "skipped": skipped,
        "caption_entries_dropped": entries_dropped,
    }


def write_array_record(
    jsonl_path,
    output_dir,
    num_shards=1,
    prefix="records",
    overwrite=False,
    show_progress=True,
):
    """Converts a JSONL image-text folder into ArrayRecord shards.

    Image files are copied as they are (still encoded; they are decoded and
    checked by the pipeline, which counts bad ones). Records that cannot be
    stored at all are skipped and counted: index lines that are not valid
    JSON objects (`invalid_record`) and images whose file is missing
    (`missing_file`). Records keep their order: shard `k` holds a contiguous
    run of the index, so reading the shards in name order gives the index
    order. A list of synthetic captions is stored as a list (see
    `keras_tips.data.records`); its entries that are not strings cannot be
    stored and are left out, and counted in the summary (a list left empty
    reads as a missing caption).

    Args:
        jsonl_path: path of the JSONL index (see `JsonlImageTextSource`).
        output_dir: folder to write the shards into (created if needed).
        num_shards: int. Number of shards (at most one per index line).
        prefix: str. Shard file name prefix.
        overwrite: bool. Replace the shards of an earlier conversion with
            the same prefix (all of them, whatever their number).
        show_progress: bool. Show a tqdm progress bar.

    Returns:
        A dict: `"shards"` (list of paths), `"records_written"` (int),
        `"records_skipped"` (int), `"skipped"` (dict kind -> count) and
        `"caption_entries_dropped"` (int: non-string entries of synthetic
        caption lists).

    Example:
    ```python
    summary = write_array_record("data/index.jsonl", "data/shards", 4)
    source = ArrayRecordImageTextSource(summary["shards"])
    ```
    """
    from array_record.python.array_record_module import ArrayRecordWriter
    from tqdm.auto import tqdm

    if int(num_shards) < 1:
        raise ValueError(f"`num_shards` must be >= 1. Received: {num_shards}")
    entries = read_jsonl_index(jsonl_path)
    root = os.path.dirname(os.path.abspath(jsonl_path))
    num_shards = max(1, min(int(num_shards), len(entries)))
    shard_paths = prepare_shard_paths(output_dir, prefix, num_shards, overwrite)

    skipped = {}
    written = 0
    entries_dropped = 0
    progress = tqdm(
        total=len(entries),
        unit="record",
        desc="Writing ArrayRecord shards",
        disable=not show_progress,
    )
    with progress:
        for shard_index, shard_path in enumerate(shard_paths):
            begin = shard_index * len(entries) // num_shards
            end = (shard_index + 1) * len(entries) // num_shards
            writer = ArrayRecordWriter(shard_path, ARRAY_RECORD_WRITER_OPTIONS)
            try:
                for entry in entries[begin:end]:
                    progress.update(1)
                    if entry is None:
                        kind = stats.INVALID_RECORD
                        skipped[kind] = skipped.get(kind, 0) + 1
                        continue
                    image_name, caption, synthetic_caption = entry
                    try:
                        with open(os.path.join(root, image_name), "rb") as f:
                            image = f.read()
                    except OSError:
                        kind = stats.MISSING_FILE
                        skipped[kind] = skipped.get(kind, 0) + 1
                        continue
                    synthetic_caption, dropped = storable_synthetic_caption(
                        synthetic_caption
                    )
                    entries_dropped += dropped
                    writer.write(
                        serialize_record(
                            image=image,
                            caption=caption,
                            synthetic_caption=synthetic_caption,
                            key=image_name,
                        )
                    )
                    written += 1
            finally:
                writer.close()
            progress.set_postfix(written=written, skipped=sum(skipped.values()))
    summary = conversion_summary(shard_paths, written, skipped, entries_dropped)
    logger.info(
        "Wrote %d records into %d ArrayRecord shards in %s (skipped: %s; "
        "non-string synthetic caption list entries left out: %d).",
        written,
        num_shards,
        output_dir,
        skipped or "none",
        entries_dropped,
    )
    return summary
