"""Fixtures of the data tests: a tokenizer and a JSONL folder of bad records."""

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from keras_tips.data import stats

TOKENIZER_PATH = os.path.join(
    os.path.dirname(__file__), "..", "testdata", "tips_tiny", "tokenizer.model"
)
SEQUENCE_LENGTH = 16


@pytest.fixture(scope="session")
def tokenizer():
    """`TIPSTokenizer.tokenize_numpy` of the tiny reference tokenizer."""
    from keras_tips.models.tips_tokenizer import TIPSTokenizer

    return TIPSTokenizer(
        proto=TOKENIZER_PATH, sequence_length=SEQUENCE_LENGTH
    ).tokenize_numpy


def encode(image, format="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def png_header_only(width, height):
    """A PNG that declares `width` x `height` pixels but holds (almost) none.

    A decoder that trusted the header would allocate width * height * 3
    bytes: the shape of a decompression bomb, without the bomb.
    """

    def chunk(kind, data):
        body = kind + data
        return (
            struct.pack(">I", len(data))
            + body
            + struct.pack(">I", zlib.crc32(body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def rgb_image(seed, size=40):
    rng = np.random.default_rng(seed)
    return Image.fromarray(
        rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
    )


# (name, file bytes or None for a missing file, json fields, kept, kinds)
# Captions double as ids: "record NAME" says which record reached a batch.
def _bad_record_specs():
    truncated = encode(rgb_image(1, 64), "JPEG", quality=95)
    gray = Image.fromarray(np.full((30, 30), 100, dtype=np.uint8))
    sixteen = Image.fromarray(np.full((30, 30), 32768, dtype=np.uint16))
    rgba = np.zeros((30, 30, 4), dtype=np.uint8)  # fully transparent black
    cmyk = Image.new("CMYK", (30, 30), (0, 0, 0, 0))
    return [
        ("good0", encode(rgb_image(0)), {}, True, []),
        ("good1", encode(rgb_image(1), "JPEG"), {}, True, []),
        ("good2", encode(rgb_image(2)), {}, True, []),
        ("gray", encode(gray), {}, True, [stats.CONVERTED_GRAYSCALE]),
        (
            "sixteen",
            encode(sixteen),
            {},
            True,
            [stats.CONVERTED_GRAYSCALE, stats.CONVERTED_16BIT],
        ),
        (
            "rgba",
            encode(Image.fromarray(rgba)),
            {},
            True,
            [stats.CONVERTED_ALPHA],
        ),
        ("cmyk", encode(cmyk, "JPEG"), {}, True, [stats.CONVERTED_OTHER_MODE]),
        (
            "empty_web",
            encode(rgb_image(3)),
            {"caption": "   "},
            True,
            ["web_caption_empty"],
        ),
        (
            "bad_utf8_web",
            encode(rgb_image(4)),
            {"caption": b"caf\xe9 \xff"},
            True,
            ["web_caption_not_utf8"],
        ),
        (
            "no_synthetic",
            encode(rgb_image(5)),
            {"synthetic_caption": None},
            True,
            ["synthetic_caption_missing"],
        ),
        (
            "unreadable",
            b"this is not an image at all",
            {},
            False,
            [stats.UNREADABLE_IMAGE],
        ),
        (
            "truncated",
            truncated[: len(truncated) // 2],
            {},
            False,
            [stats.TRUNCATED_IMAGE],
        ),
        ("zero_bytes", b"", {}, False, [stats.EMPTY_FILE]),
        (
            "bomb",
            png_header_only(60_000, 60_000),
            {},
            False,
            [stats.TOO_LARGE_IMAGE],
        ),
        ("missing", None, {}, False, [stats.MISSING_FILE]),
        (
            "no_captions",
            encode(rgb_image(6)),
            {"caption": None, "synthetic_caption": None},
            False,
            [
                "web_caption_missing",
                "synthetic_caption_missing",
                stats.NO_CAPTION,
            ],
        ),
    ]


def write_jsonl(directory, lines):
    """Writes raw JSONL lines (bytes) and returns the index path."""
    path = os.path.join(directory, "index.jsonl")
    with open(path, "wb") as f:
        for line in lines:
            f.write(line + b"\n")
    return path


def _json_line(fields):
    # Captions given as bytes are written raw, so the file holds bytes that
    # are not UTF-8, as scraped data sometimes does.
    raw = {k: v for k, v in fields.items() if isinstance(v, bytes)}
    text = {k: v for k, v in fields.items() if v is not None and k not in raw}
    line = json.dumps(text).encode("utf-8")
    for name, value in raw.items():
        line = line[:-1] + b', "' + name.encode() + b'": "' + value + b'"}'
    return line


@pytest.fixture
def bad_records_dir(tmp_path):
    """A JSONL folder with good records and every kind of bad one.

    Returns:
        dict: `jsonl_path`, `kept` (ids of the records that must arrive),
        `counts` (expected problem counts), `num_lines`, `num_skipped`.
    """
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    lines, kept, counts, skipped = [], [], {}, 0
    for name, data, overrides, keep, kinds in _bad_record_specs():
        file_name = f"images/{name}.img"
        if data is not None:
            (tmp_path / file_name).write_bytes(data)
        fields = {
            "image": file_name,
            "caption": f"web record {name}",
            "synthetic_caption": f"record {name}",
        }
        fields.update(overrides)
        lines.append(_json_line(fields))
        if keep:
            kept.append(name)
        else:
            skipped += 1
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1
    lines.append(b'{"image": "images/good0.img", "caption": ')  # broken JSON
    lines.append(b'{"caption": "no image key"}')
    lines.append(b"")  # blank lines are not records
    counts[stats.INVALID_RECORD] = 2
    skipped += 2
    return {
        "jsonl_path": write_jsonl(str(tmp_path), lines),
        "kept": kept,
        "counts": counts,
        "num_lines": len(lines) - 1,
        "num_skipped": skipped,
    }
