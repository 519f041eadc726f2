"""Fuzzed public entry points: each input either works (finite output of the
right shape) or raises the documented, clear error; nothing crashes deep
inside NumPy, PIL, h5py, SentencePiece or a backend."""

import io
import json
import os
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from PIL import Image

from keras_tips.conversion.official_checkpoint import read_npz
from keras_tips.errors import CheckpointError
from keras_tips.data import stats
from keras_tips.data.decoding import ImageDecodeError
from keras_tips.data.decoding import decode_image
from keras_tips.data.records import RECORD_FIELDS
from keras_tips.data.records import RECORD_MAGIC
from keras_tips.data.records import deserialize_record
from keras_tips.data.records import serialize_record
from keras_tips.data.sources import JsonlImageTextSource

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture,
                           HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=15)


# --- encode_images ------------------------------------------------------------

# Few distinct spatial sizes: every new valid shape is compiled once.
SIDES = st.sampled_from([0, 1, 13, 14, 15, 28])
DTYPES = st.sampled_from(
    ["float32", "float64", "float16", "uint8", "int32", "bool", "complex64"]
)
SPECIAL = st.sampled_from(
    [np.nan, np.inf, -np.inf, -1.0, 0.0, 0.5, 1.0, 1.0005, 2.0, 255.0, 1e38,
     -1e38, 1e300]
)


@st.composite
def rgb_batches(draw):
    """(B, H, W, 3) or (H, W, 3) floats, mostly in [0, 1]."""
    shape = [draw(st.sampled_from([14, 28])), draw(st.sampled_from([14, 28])), 3]
    if draw(st.booleans()):
        shape.insert(0, draw(st.sampled_from([1, 2])))
    dtype = draw(st.sampled_from(["float32", "float64", "float16"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = rng.random(shape).astype(dtype)
    if draw(st.booleans()):
        index = draw(st.integers(0, values.size - 1))
        with np.errstate(all="ignore"):
            values.reshape(-1)[index] = np.asarray(draw(SPECIAL)).astype(dtype)
    return values


@st.composite
def arbitrary_arrays(draw):
    ndim = draw(st.sampled_from([0, 1, 2, 3, 4, 4, 4, 5]))
    shape = [draw(SIDES) for _ in range(ndim)]
    if ndim >= 3 and draw(st.booleans()):
        shape[-1] = 3  # Mostly well-formed RGB, so the values get tested.
    if ndim == 4:
        shape[0] = draw(st.sampled_from([0, 1, 2]))
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    with np.errstate(all="ignore"):
        values = rng.random(shape).astype(dtype)
        for _ in range(draw(st.integers(0, 3))):
            if values.size:
                index = draw(st.integers(0, values.size - 1))
                values.reshape(-1)[index] = np.asarray(draw(SPECIAL)).astype(dtype)
    return values


def _check_image_features(features, images):
    batch, height, width = images.shape[0], images.shape[-3], images.shape[-2]
    if images.ndim == 3:
        batch = 1
    patches = (height // 14) * (width // 14)
    assert features["cls_1"].shape[0] == batch
    assert features["cls_2"].shape == features["cls_1"].shape
    assert features["patches"].shape[:2] == (batch, patches)
    for value in features.values():
        assert value.dtype == np.float32 and np.isfinite(value).all()


@FUZZ
@given(images=st.one_of(rgb_batches(), arbitrary_arrays()))
def test_encode_images(tiny_model, images):
    try:
        features = tiny_model.encode_images(images)
    except ValueError as error:
        event(f"ValueError: {str(error)[:30]}")
        return
    event("encoded")
    _check_image_features(features, images)


@FEW
@given(
    images=st.one_of(
        st.none(),
        st.text(max_size=5),
        st.lists(st.floats(allow_nan=True), max_size=4),
        st.lists(st.lists(st.integers(-5, 300), max_size=3), max_size=3),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    )
)
def test_encode_images_of_python_objects(tiny_model, images):
    with pytest.raises(ValueError):
        tiny_model.encode_images(images)


# --- Texts ----------------------------------------------------------------------

# Arbitrary Unicode (hypothesis leaves out lone surrogates), control
# characters, long and enormous strings, and bytes.
TEXT = st.one_of(
    st.text(max_size=200),
    st.text(st.characters(max_codepoint=0x1F), max_size=50),
    st.text(st.sampled_from(["\x00", "\u200b", "\ufeff", "\U0001F600", "a", " "]),
            max_size=300),
    st.builds(lambda n, c: c * n, st.integers(10_000, 200_000),
              st.sampled_from(["a", "xyz ", "\U0001F600", "\x00"])),
    st.binary(max_size=100),
)
TEXTS = st.one_of(TEXT, st.lists(TEXT, max_size=5))


def _as_list(texts):
    return [texts] if isinstance(texts, (str, bytes)) else texts


def _invalid_utf8(texts):
    for text in _as_list(texts):
        if isinstance(text, bytes):
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                return True
    return False


@FUZZ
@given(texts=TEXTS)
def test_tokenize_numpy(tiny_model, texts):
    tokenizer = tiny_model.preprocessor.tokenizer
    if _invalid_utf8(texts):
        with pytest.raises(ValueError, match="UTF-8"):
            tokenizer.tokenize_numpy(texts)
        return
    token_ids, padding_mask = tokenizer.tokenize_numpy(texts)
    length = tokenizer.sequence_length
    assert token_ids.shape == (len(_as_list(texts)), length)
    assert token_ids.dtype == np.int32 and padding_mask.dtype == bool
    assert token_ids.min(initial=0) >= 0
    assert token_ids.max(initial=0) < tokenizer.vocabulary_size()
    np.testing.assert_array_equal(padding_mask, token_ids != 0)
    # Real tokens first, then padding.
    assert (np.diff(padding_mask.astype(int), axis=1) <= 0).all()


@FEW
@given(texts=TEXTS)
def test_encode_texts(tiny_model, texts):
    try:
        embeddings = tiny_model.encode_texts(texts)
    except ValueError as error:
        assert _invalid_utf8(texts) or not _as_list(texts), error
        return
    assert embeddings.shape == (
        len(_as_list(texts)),
        tiny_model.backbone.text_encoder.hidden_dim,
    )
    assert embeddings.dtype == np.float32 and np.isfinite(embeddings).all()


@pytest.mark.parametrize(
    "texts",
    [["ok", "\ud800"], "tail \udcff", [b"\xff\xfe"], [None], [3], [["nested"]], 5],
)
def test_texts_that_are_not_text(tiny_model, texts):
    with pytest.raises(ValueError, match="Text 1|Text 0|string"):
        tiny_model.preprocessor.tokenizer.tokenize_numpy(texts)
    with pytest.raises(ValueError):
        tiny_model.encode_texts(texts)


# --- Official checkpoint reader ---------------------------------------------------


def _small_npz():
    buffer = io.BytesIO()
    np.savez(
        buffer,
        cls_token=np.zeros((1, 1, 8), "float32"),
        pos_embed=np.arange(40, dtype="float32").reshape(1, 5, 8),
    )
    return buffer.getvalue()


SMALL_NPZ = _small_npz()


@st.composite
def mangled_npz(draw):
    data = bytearray(SMALL_NPZ)
    for _ in range(draw(st.integers(1, 6))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return bytes(data[:cut])


def _write(data, suffix):
    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


@FUZZ
@given(data=st.one_of(st.binary(max_size=2000), mangled_npz(),
                      st.just(SMALL_NPZ),
                      st.builds(lambda b: b"PK\x03\x04" + b, st.binary())))
def test_read_npz(data):
    path = _write(data, ".npz")
    try:
        arrays = read_npz(path, "vision checkpoint")
    except CheckpointError as error:
        assert path in str(error)
        event("CheckpointError")
        return
    finally:
        os.remove(path)
    event("read")
    assert all(isinstance(value, np.ndarray) for value in arrays.values())


# --- Image decoding ----------------------------------------------------------------


def _encoded(format, **kwargs):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (12, 17, 3), dtype=np.uint8))
    if format == "GIF":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


VALID_IMAGES = [
    _encoded("PNG"),
    _encoded("JPEG", quality=80),
    _encoded("GIF"),
    _encoded("BMP"),
    _encoded("TIFF"),
    _encoded("WEBP"),
]


@st.composite
def mangled_images(draw):
    data = bytearray(draw(st.sampled_from(VALID_IMAGES)))
    for _ in range(draw(st.integers(1, 8))):
        index = draw(st.integers(0, len(data) - 1))
        data[index] = draw(st.integers(0, 255))
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return bytes(data[:cut])


@FUZZ
@given(data=st.one_of(st.binary(max_size=500), mangled_images()))
def test_decode_image(data):
    try:
        values, conversions = decode_image(data, max_pixels=1_000_000)
    except ImageDecodeError as error:
        assert error.kind in stats.SKIP_KINDS, error.kind
        event(error.kind)
        return
    event("decoded")
    assert values.dtype == np.uint8 and values.ndim == 3
    assert values.shape[-1] == 3 and min(values.shape[:2]) >= 1
    assert isinstance(conversions, tuple)


# --- Records ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@st.composite
def record_bytes(draw):
    kind = draw(st.sampled_from([0, 1, 2, 2, 2, 3]))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:  # A real record, mangled.
        data = bytearray(
            serialize_record(
                image=draw(st.binary(max_size=50)),
                caption=draw(st.text(max_size=20)),
                key=draw(st.text(max_size=10)),
            )
        )
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data[: draw(st.integers(0, len(data)))])
    # A well-framed record with an arbitrary header.
    payload = draw(st.binary(max_size=60))
    if kind == 2:
        names = st.sampled_from(list(RECORD_FIELDS) * 3 + ["other", ""])
        lengths = st.one_of(
            st.integers(0, 12), st.integers(0, 12), st.integers(0, 12),
            st.integers(-5, 2**40), st.floats(), st.text(),
        )
        fields = draw(st.lists(st.tuples(names, lengths), max_size=4))
        header = {"fields": fields}
        total = sum(n for _, n in fields if isinstance(n, int) and n > 0)
        if draw(st.booleans()) and total < 100:
            # Payloads that fit the header exactly (then, maybe, junk).
            payload = draw(st.binary(min_size=total, max_size=total))
            payload += draw(st.sampled_from([b"", b"x"]))
    else:
        header = draw(JSON_VALUES)
    text = json.dumps(header).encode()
    length = draw(st.one_of(st.just(len(text)), st.integers(0, 2**32 - 1)))
    return RECORD_MAGIC + struct.pack("<I", length) + text + payload


@FUZZ
@given(data=record_bytes())
def test_deserialize_record(data):
    try:
        record = deserialize_record(data)
    except ValueError as error:
        assert "TIPS record" in str(error)
        event("ValueError")
        return
    event("parsed")
    assert set(record) == {"image", "caption", "synthetic_caption", "key", "error"}
    assert isinstance(record["key"], str)
    for name in ("image", "caption"):
        assert record[name] is None or isinstance(record[name], bytes)
    synthetic = record["synthetic_caption"]
    if isinstance(synthetic, list):  # repeated "synthetic_captions" fields
        assert synthetic and all(isinstance(c, bytes) for c in synthetic)
    else:
        assert synthetic is None or isinstance(synthetic, bytes)


def test_deserialize_record_with_absurd_headers():
    for header in (b'{"fields":[["key",1e999]]}', b"[" * 100_000 + b"]" * 100_000):
        data = RECORD_MAGIC + struct.pack("<I", len(header)) + header
        with pytest.raises(ValueError, match="TIPS record"):
            deserialize_record(data)


# --- JSONL index ---------------------------------------------------------------------

JSONL_LINES = st.lists(
    st.one_of(
        st.binary(max_size=60).filter(lambda b: b"\n" not in b and b"\r" not in b),
        st.builds(lambda v: json.dumps(v).encode(), JSON_VALUES),
        st.builds(
            lambda image, caption: json.dumps(
                {"image": image, "caption": caption}
            ).encode(),
            st.one_of(st.text(max_size=20), st.sampled_from(
                ["", ".", "/", "good.png", "../good.png", "missing.png",
                 "a\x00b.png", "\ud800.png", "sub/"])),
            JSON_VALUES,
        ),
        st.just(b"[" * 50_000 + b"]" * 50_000),
    ),
    max_size=8,
)


@FEW
@given(lines=JSONL_LINES)
def test_jsonl_source_never_raises_on_junk(tmp_path_factory, lines):
    root = tmp_path_factory.mktemp("jsonl")
    (root / "good.png").write_bytes(VALID_IMAGES[0])
    (root / "sub").mkdir()
    index = root / "index.jsonl"
    index.write_bytes(b"\n".join(lines) + b"\n")
    source = JsonlImageTextSource(str(index))
    for position in range(len(source)):
        record = source[position]
        assert record["error"] is None or record["error"] in stats.SKIP_KINDS
        if record["error"] is None:
            assert record["image"] == VALID_IMAGES[0]
        assert record["caption"] is None or isinstance(record["caption"], str)
