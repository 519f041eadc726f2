"""Image-text records: the common item format and its byte serialization.

Every data source of this package returns items of one format, a dict with
these keys (an "image-text record"):

- `"image"`: the image, either encoded file bytes (JPEG, PNG, ...) or a
  decoded `uint8` array (H, W, 3), or `None` when it could not be read.
- `"caption"`: the web (alt-text) caption, `str`, `bytes` (decoded as UTF-8
  downstream) or `None` when missing.
- `"synthetic_caption"`: the synthetic (rich, generated) caption, same
  types, or a list of such captions: the same image described at several
  granularities (a phrase, a sentence, a full description), of which the
  pipeline draws one per example.
- `"key"`: a `str` that names the record in messages (a path or an id).
- `"error"`: `None`, or the kind of a problem found while reading the record
  (one of the skip kinds of `keras_tips.data.stats`, e.g. `"missing_file"`).

ArrayRecord shards store such records in a small self-describing byte format
(no pickle, no base64 inflation of the image bytes):

```
8 bytes   magic b"TIPSREC1"
4 bytes   little-endian uint32: length of the header
header    UTF-8 JSON: {"fields": [[name, length], ...]}
payloads  the raw bytes of every field, in header order
```

Captions are stored as their raw bytes, so text that is not valid UTF-8 is
kept as it was and detected when the record is read.

A list of synthetic captions is stored as one `"synthetic_captions"` field
per entry, in list order (the header may name that field several times);
a single caption keeps its `"synthetic_caption"` field. Records with a
single caption are thus byte-identical to those written before lists
existed, and older shards read unchanged. A record holds one form or the
other, never both; an empty list is stored as no caption (and read as a
missing one, which is how the pipeline treats an empty list anyway).
"""

import json
import struct

RECORD_MAGIC = b"TIPSREC1"
_HEADER_LENGTH = struct.Struct("<I")
# The fields an image-text record may store, in the order they are written.
RECORD_FIELDS = (
    "key", "image", "caption", "synthetic_caption", "synthetic_captions"
)
# The one field that may be repeated: an entry of a list of synthetic
# captions each.
_LIST_FIELD = "synthetic_captions"


def make_record(
    image=None, caption=None, synthetic_caption=None, key="", error=None
):
    """Builds an image-text record dict (see the module docstring).

    Args:
        image: encoded image bytes, a uint8 array, or None.
        caption: web caption (str, bytes or None).
        synthetic_caption: synthetic caption (str, bytes or None), or a
            list of them (one is drawn per example).
        key: str naming the record.
        error: None or a skip kind from `keras_tips.data.stats`.

    Returns:
        A dict with keys `image`, `caption`, `synthetic_caption`, `key`,
        `error`.
    """
    return {
        "image": image,
        "caption": caption,
        "synthetic_caption": synthetic_caption,
        "key": key,
        "error": error,
    }


def _to_bytes(value, name):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        # `surrogateescape` restores bytes that were not valid UTF-8 when the
        # text was read, so such captions are stored unchanged.
        return value.encode("utf-8", errors="surrogateescape")
    raise TypeError(
        f"Field '{name}' must be bytes or str to be serialized. "
        f"Received: {type(value).__name__}"
    )


def serialize_record(image=None, caption=None, synthetic_caption=None, key=""):
    """Serializes one record to bytes (see the module docstring).

    Fields that are `None` are left out, so "missing" survives a round trip.

    Args:
        image: encoded image bytes or None. Decoded arrays are not accepted:
            shards store encoded files.
        caption: web caption (str, bytes or None).
        synthetic_caption: synthetic caption (str, bytes or None), or a
            list or tuple of them (stored as repeated `"synthetic_captions"`
            fields; entries that are None are left out).
        key: str naming the record.

    Returns:
        bytes.

    Example:
    ```python
    data = serialize_record(image=png_bytes, caption="a cat", key="cat.png")
    record = deserialize_record(data)
    ```
    """
    values = {
        "key": [key],
        "image": [image],
        "caption": [caption],
        "synthetic_caption": [synthetic_caption],
        "synthetic_captions": [],
    }
    if isinstance(synthetic_caption, (list, tuple)):
        values["synthetic_caption"] = []
        values["synthetic_captions"] = list(synthetic_caption)
    header_fields = []
    payloads = []
    for name in RECORD_FIELDS:
        for value in values[name]:
            if value is None:
                continue
            payload = _to_bytes(value, name)
            header_fields.append([name, len(payload)])
            payloads.append(payload)
    header = json.dumps({"fields": header_fields}, separators=(",", ":"))
    header = header.encode("utf-8")
    return b"".join(
        [RECORD_MAGIC, _HEADER_LENGTH.pack(len(header)), header, *payloads]
    )


def deserialize_record(data):
    """Parses bytes written by `serialize_record` into a record dict.

    Captions come back as `bytes` (UTF-8 is checked downstream, where bad
    captions are counted), a list of synthetic captions as a list of
    `bytes`; the key is decoded leniently.

    Args:
        data: bytes.

    Returns:
        An image-text record dict.

    Raises:
        ValueError: if `data` is not a well-formed record.
    """
    data = bytes(data)
    prefix = len(RECORD_MAGIC) + _HEADER_LENGTH.size
    if len(data) < prefix or not data.startswith(RECORD_MAGIC):
        raise ValueError("Not a TIPS record: the magic bytes are missing.")
    (header_length,) = _HEADER_LENGTH.unpack_from(data, len(RECORD_MAGIC))
    if prefix + header_length > len(data):
        raise ValueError("Truncated TIPS record: the header is incomplete.")
    try:
        header = json.loads(
            data[prefix : prefix + header_length].decode("utf-8")
        )
        fields = [(str(name), int(length)) for name, length in header["fields"]]
    except (
        ValueError,
        KeyError,
        TypeError,
        OverflowError,  # a length of 1e999 parses as inf
        RecursionError,  # absurdly nested JSON
    ) as error:
        raise ValueError(f"Malformed TIPS record header ({error}).") from None
    offset = prefix + header_length
    values = {}
    synthetic_captions = []
    for name, length in fields:
        if name not in RECORD_FIELDS or length < 0:
            raise ValueError(f"Malformed TIPS record field {name!r}.")
        if name in values:
            raise ValueError(f"Malformed TIPS record: field {name!r} repeats.")
        if offset + length > len(data):
            raise ValueError(f"Truncated TIPS record: field {name!r} is cut.")
        payload = data[offset : offset + length]
        if name == _LIST_FIELD:
            synthetic_captions.append(payload)
        else:
            values[name] = payload
        offset += length
    if offset != len(data):
        raise ValueError("Malformed TIPS record: trailing bytes after fields.")
    synthetic_caption = values.get("synthetic_caption")
    if synthetic_captions:
        if synthetic_caption is not None:
            raise ValueError(
                "Malformed TIPS record: both 'synthetic_caption' and "
                "'synthetic_captions' fields."
            )
        synthetic_caption = synthetic_captions
    key = values.get("key", b"").decode("utf-8", errors="replace")
    return make_record(
        image=values.get("image"),
        caption=values.get("caption"),
        synthetic_caption=synthetic_caption,
        key=key,
    )
