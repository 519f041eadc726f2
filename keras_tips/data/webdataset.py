"""Reads webdataset tar shards (as img2dataset writes them) into ArrayRecord
shards.

A webdataset shard is a tar file whose members are grouped into samples by
key: the member's path up to the first "." of its file name. img2dataset
writes, one after another for each sample:

```
000000000.jpg    the encoded image
000000000.txt    its caption
000000000.json   its metadata ({"caption": ..., "url": ..., "status": ...})
```

Which members become which record field:

| record field        | read from                                          |
|---------------------|----------------------------------------------------|
| `image`             | the `.jpg` / `.jpeg` / `.png` / `.webp` / `.bmp` member, stored still encoded |
| `caption`           | the `.txt` member; without one, the `.json` member's `"caption"` |
| `synthetic_caption` | the `.json` member's `"synthetic_caption"` (a string, or a list of captions of different detail) |
| `key`               | the sample's key                                   |

Other members and JSON keys (`.url.txt`, `"url"`, `"status"`, ...) are not
stored. JSON captions are read as a JSONL index's are (the same functions of
`keras_tips.data.sources`): a caption that is not a string is treated as
missing (counted by the pipeline as `no_caption`), and caption bytes that
are not valid UTF-8 are kept so the pipeline reports them as `not_utf8`.

The tar files are read as streams (`tarfile` mode `"r|*"`, gzip included):
one sample is in memory at a time, whatever the size of a shard. Each tar
file becomes one ArrayRecord shard, in the order given, with its samples in
tar order, so reading the ArrayRecord shards in name order gives the
samples in the order of the tar files. (The number of samples of a tar
stream is not known before it is read, so the records are not spread over a
chosen number of shards as `write_array_record` does for a JSONL index.)
"""

import glob
import json
import logging
import os
import tarfile

from keras_tips.data import stats
from keras_tips.data.records import serialize_record
from keras_tips.data.shards import ARRAY_RECORD_WRITER_OPTIONS
from keras_tips.data.shards import conversion_summary
from keras_tips.data.shards import prepare_shard_paths
from keras_tips.data.shards import storable_synthetic_caption
from keras_tips.data.sources import _caption_value
from keras_tips.data.sources import _synthetic_caption_value

logger = logging.getLogger("keras_tips.data")

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def _split_key(name):
    """(key, extension) of a member name, webdataset's way: the extension
    is everything after the first "." of the file name, lowercased."""
    folder, _, file_name = name.rpartition("/")
    stem, dot, extension = file_name.partition(".")
    if not dot:
        return None, None
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def iter_webdataset_samples(tar_path):
    """The samples of one webdataset tar file, streamed.

    Consecutive members with the same key form one sample (webdataset
    writes a sample's members together). Members that are not regular
    files, and files without an extension, are passed over.

    Args:
        tar_path: str. A `.tar` (or gzip-compressed tar) file.

    Yields:
        `(key, members)` pairs, `members` a dict extension -> bytes
        (e.g. `{"jpg": b"...", "txt": b"a cat", "json": b"{...}"}`).

    Raises:
        ValueError: the file is not a tar file, or is damaged or cut short
            (naming it and the last sample read).

    Example:
    ```python
    for key, members in iter_webdataset_samples("shards/00000.tar"):
        print(key, sorted(members))
    ```
    """
    key, members = None, {}
    try:
        with tarfile.open(tar_path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                member_key, extension = _split_key(member.name)
                if member_key is None:
                    continue
                if member_key != key:
                    if members:
                        yield key, members
                    key, members = member_key, {}
                members[extension] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        after = f" at or after sample {key!r}" if key is not None else ""
        raise ValueError(
            f"{tar_path!r} is not a readable tar file or is damaged{after} "
            f"({type(error).__name__}: {error}). Download it again, or leave "
            "it out of the conversion."
        ) from error
    if members:
        yield key, members


def sample_to_record(key, members):
    """The record fields of one webdataset sample (see the module table).

    Args:
        key: str. The sample's key.
        members: dict extension -> bytes, from `iter_webdataset_samples`.

    Returns:
        A dict with `image` (bytes), `caption` (str or None),
        `synthetic_caption` (str, list or None) and `key`, or None when the sample cannot be stored: it has no
        image member, or its `.json` member is not a JSON object.
    """
    image = next(
        (members[ext] for ext in IMAGE_EXTENSIONS if ext in members), None
    )
    if image is None:
        return None
    metadata = {}
    if "json" in members:
        try:
            metadata = json.loads(members["json"].decode("utf-8", "surrogateescape"))
        except (ValueError, RecursionError):
            return None
        if not isinstance(metadata, dict):
            return None
    if "txt" in members:
        caption = members["txt"].decode("utf-8", "surrogateescape").strip()
    else:
        caption = _caption_value(metadata.get("caption"))
    return {
        "image": image,
        "caption": caption,
        "synthetic_caption": _synthetic_caption_value(
            metadata.get("synthetic_caption")
        ),
        "key": key,
    }


def find_tar_shards(paths):
    """The tar files named by `paths` (files, folders of them, or glob
    patterns such as `"shards/*.tar"`), in the order given, each folder's
    or pattern's files sorted.

    Raises:
        ValueError: a path names no tar file.
    """
    found = []
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.endswith(TAR_SUFFIXES))
            matches = [os.path.join(path, n) for n in names]
        elif os.path.isfile(path):
            matches = [path]
        else:
            matches = sorted(glob.glob(path))
        if not matches:
            raise ValueError(
                f"{path!r} names no tar file (a .tar file, a folder of them, "
                "or a glob pattern)."
            )
        found.extend(matches)
    return found


def write_webdataset_array_record(
    tar_paths, output_dir, prefix="records", overwrite=False, show_progress=True
):
    """Converts webdataset tar shards into ArrayRecord shards, streaming.

    One ArrayRecord shard per tar file (see the module docstring for which
    members are read). Samples that cannot be stored are skipped and
    counted as `invalid_record`: no image member, or a `.json` member that
    is not a JSON object. Images are stored still encoded; the pipeline
    decodes and checks them.

    Args:
        tar_paths: a tar file, a folder of them, a glob pattern, or a list
            of these (see `find_tar_shards`).
        output_dir: folder to write the shards into (created if needed).
        prefix: str. Shard file name prefix.
        overwrite: bool. Replace the shards of an earlier conversion with
            the same prefix.
        show_progress: bool. Show a tqdm progress bar (samples written).

    Returns:
        A dict as `write_array_record`'s: `"shards"`, `"records_written"`,
        `"records_skipped"`, `"skipped"` (kind -> count) and
        `"caption_entries_dropped"`.

    Example:
    ```python
    summary = write_webdataset_array_record("laion/*.tar", "data/shards")
    source = ArrayRecordImageTextSource(summary["shards"])
    ```
    """
    from array_record.python.array_record_module import ArrayRecordWriter
    from tqdm.auto import tqdm

    tar_files = find_tar_shards(tar_paths)
    shard_paths = prepare_shard_paths(output_dir, prefix, len(tar_files), overwrite)
    skipped = {}
    written = 0
    entries_dropped = 0
    progress = tqdm(
        unit="sample", desc="Writing ArrayRecord shards", disable=not show_progress
    )
    with progress:
        for tar_file, shard_path in zip(tar_files, shard_paths):
            progress.set_description(f"Reading {os.path.basename(tar_file)}")
            writer = ArrayRecordWriter(shard_path, ARRAY_RECORD_WRITER_OPTIONS)
            try:
                for key, members in iter_webdataset_samples(tar_file):
                    progress.update(1)
                    record = sample_to_record(key, members)
                    if record is None:
                        kind = stats.INVALID_RECORD
                        skipped[kind] = skipped.get(kind, 0) + 1
                        continue
                    record["synthetic_caption"], dropped = (
                        storable_synthetic_caption(record["synthetic_caption"])
                    )
                    entries_dropped += dropped
                    writer.write(serialize_record(**record))
                    written += 1
            finally:
                writer.close()
            progress.set_postfix(written=written, skipped=sum(skipped.values()))
    summary = conversion_summary(shard_paths, written, skipped, entries_dropped)
    logger.info(
        "Wrote %d records from %d tar files into ArrayRecord shards in %s "
        "(skipped: %s; non-string synthetic caption list entries left out: "
        "%d).",
        written,
        len(tar_files),
        output_dir,
        skipped or "none",
        entries_dropped,
    )
    return summary
