"""Random-access sources of image-text records.

All sources implement grain's `RandomAccessDataSource` protocol (`__len__`,
`__getitem__`) and return image-text records (see
`keras_tips.data.records`). Reading problems never raise: they are returned
in the record's `"error"` field and counted by the pipeline.
"""

import glob
import json
import os

from keras_tips.data import stats
from keras_tips.data.records import deserialize_record
from keras_tips.data.records import make_record

ARRAY_RECORD_SUFFIX = ".array_record"


def _caption_value(value):
    # Only strings are captions; anything else (numbers, lists) is treated as
    # a missing caption and counted as such downstream.
    return value if isinstance(value, str) else None


def _synthetic_caption_value(value):
    # A list is the caption at several granularities; an entry that is not a
    # string is a missing caption among them, counted downstream.
    if isinstance(value, list):
        return [_caption_value(entry) for entry in value]
    return _caption_value(value)


def read_jsonl_index(jsonl_path):
    """Parses a JSONL image-text index.

    Each non-blank line is a JSON object with `"image"` (a path, relative to
    the JSONL file's folder unless absolute) and optional `"caption"` (a
    string) and `"synthetic_caption"` (a string, or a list of strings: the
    caption at several granularities, of which the pipeline draws one per
    example). Lines that are not valid JSON objects with a string `"image"`
    give `None` entries (read later as `invalid_record`).

    Bytes that are not valid UTF-8 are kept (as surrogate escapes) so the
    caption holding them is reported as `not_utf8` instead of breaking the
    whole line.

    Args:
        jsonl_path: path to the `.jsonl` file.

    Returns:
        A list of `(image_path, caption, synthetic_caption)` tuples or None.
    """
    entries = []
    with open(jsonl_path, "rb") as f:
        for raw_line in f:
            line = raw_line.decode("utf-8", errors="surrogateescape").strip()
            if not line:
                continue
            try:
                item = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: deep nesting
                entries.append(None)
                continue
            if not isinstance(item, dict) or not isinstance(
                item.get("image"), str
            ):
                entries.append(None)
                continue
            entries.append(
                (
                    item["image"],
                    _caption_value(item.get("caption")),
                    _synthetic_caption_value(item.get("synthetic_caption")),
                )
            )
    return entries


class JsonlImageTextSource:
    """Image-text records from a folder of images indexed by a JSONL file.

    Each line of the index: `{"image": "path", "caption": "...",
    "synthetic_caption": "..."}`; either caption may be missing, and the
    synthetic one may be a list of captions of different detail
    (`["a cat", "A black cat on a mat."]`), of which the pipeline draws one
    per example and step; relative image paths are resolved from the JSONL
    file's folder. Images are returned as encoded bytes (decoded by the
    pipeline).

    When sent to worker processes only the path is sent; each worker parses
    the index again, so large indexes are not copied through pickles.

    Args:
        jsonl_path: path to the JSONL index.

    Example:
    ```python
    source = JsonlImageTextSource("data/index.jsonl")
    len(source), source[0]["caption"]
    ```
    """

    def __init__(self, jsonl_path):
        self.jsonl_path = os.fspath(jsonl_path)
        self.root = os.path.dirname(os.path.abspath(self.jsonl_path))
        self._entries = read_jsonl_index(self.jsonl_path)

    def __getstate__(self):
        return {"jsonl_path": self.jsonl_path, "root": self.root}

    def __setstate__(self, state):
        self.jsonl_path = state["jsonl_path"]
        self.root = state["root"]
        self._entries = read_jsonl_index(self.jsonl_path)

    def __len__(self):
        return len(self._entries)

    def image_path(self, index):
        """The resolved image path of record `index` (None if invalid)."""
        entry = self._entries[index]
        if entry is None:
            return None
        return os.path.join(self.root, entry[0])

    def __getitem__(self, index):
        index = int(index)
        entry = self._entries[index]
        if entry is None:
            return make_record(key=f"line {index}", error=stats.INVALID_RECORD)
        image_name, caption, synthetic_caption = entry
        path = os.path.join(self.root, image_name)
        try:
            with open(path, "rb") as f:
                image = f.read()
            error = None
        except (OSError, ValueError):  # ValueError: a NUL in the path
            image, error = None, stats.MISSING_FILE
        return make_record(
            image=image,
            caption=caption,
            synthetic_caption=synthetic_caption,
            key=image_name,
            error=error,
        )

    def __repr__(self):
        return f"JsonlImageTextSource({self.jsonl_path!r}, {len(self)} records)"


def list_array_record_files(paths):
    """Expands shard paths: a folder, a glob pattern, a file or a list.

    Returns:
        A sorted list of `.array_record` file paths.

    Raises:
        ValueError: if nothing matches.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            files.extend(
                glob.glob(os.path.join(path, "*" + ARRAY_RECORD_SUFFIX))
            )
        elif any(char in path for char in "*?["):
            files.extend(glob.glob(path))
        else:
            files.append(path)
    files = sorted(set(files))
    if not files:
        raise ValueError(f"No ArrayRecord files found in {paths}.")
    return files


class ArrayRecordImageTextSource:
    """Image-text records from ArrayRecord shards (see `write_array_record`).

    Records are read with grain's `ArrayRecordDataSource`, in shard-name
    order, and parsed from the format of `keras_tips.data.records`.

    Args:
        paths: a folder of `.array_record` shards, a glob pattern, a file,
            or a list of those.

    Example:
    ```python
    source = ArrayRecordImageTextSource("data/shards")
    record = source[0]  # {"image": b"...", "caption": b"...", ...}
    ```
    """

    def __init__(self, paths):
        import grain

        self.paths = list_array_record_files(paths)
        self._source = grain.sources.ArrayRecordDataSource(self.paths)

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        index = int(index)
        try:
            record = deserialize_record(self._source[index])
        except ValueError:
            return make_record(
                key=f"record {index}", error=stats.INVALID_RECORD
            )
        if record["image"] is None:
            record["error"] = stats.MISSING_FILE
        return record

    def __repr__(self):
        return (
            f"ArrayRecordImageTextSource({len(self.paths)} shards, "
            f"{len(self)} records)"
        )


class InMemoryImageTextSource:
    """Image-text records held in a list (tests, demos, small datasets).

    Args:
        records: a list of dicts with `"image"` (bytes or uint8 array) and
            optional `"caption"`, `"synthetic_caption"` (a caption or a list
            of them), `"key"`.
    """

    def __init__(self, records):
        self._records = [
            make_record(
                image=record.get("image"),
                caption=record.get("caption"),
                synthetic_caption=record.get("synthetic_caption"),
                key=record.get("key", str(index)),
                error=record.get("error"),
            )
            for index, record in enumerate(records)
        ]

    def __len__(self):
        return len(self._records)

    def __getitem__(self, index):
        return dict(self._records[int(index)])
