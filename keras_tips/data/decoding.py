"""Robust image decoding and caption validation.

Every problem is reported as a kind from `keras_tips.data.stats` instead of
raised, so one bad record never stops a run.
"""

import io
import re
import warnings

import numpy as np
from PIL import Image
from PIL import ImageOps

from keras_tips.data import stats

DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# Transparent pixels are shown over white, as image viewers do: what is under
# a fully transparent pixel is arbitrary (often black), not image content.
ALPHA_BACKGROUND = (255, 255, 255)
_GRAY_MODES = ("1", "L")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WHITESPACE = re.compile(r"\s+")


class ImageDecodeError(Exception):
    """An image that cannot give a correct example; `kind` says why."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _sixteen_bit_to_uint8(image):
    values = np.asarray(image)
    if image.mode == "I" and values.size and values.max() <= 255:
        # 32-bit integer images that hold 8-bit values (some TIFF writers).
        return np.clip(values, 0, 255).astype(np.uint8)
    # Scale the full 16-bit range; PIL's own "I" -> "L" conversion clips at
    # 255 instead, which would make a 16-bit image almost white.
    values = np.clip(values.astype(np.float32), 0, 65535)
    return np.round(values * (255.0 / 65535.0)).astype(np.uint8)


def _float_to_uint8(values):
    values = np.nan_to_num(values.astype(np.float32))
    if values.size and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _composite_alpha(rgb, alpha):
    alpha = alpha.astype(np.float32)[..., None] * (1.0 / 255.0)
    background = np.asarray(ALPHA_BACKGROUND, dtype=np.float32)
    out = rgb.astype(np.float32) * alpha + background * (1.0 - alpha)
    return np.round(out).astype(np.uint8)


def pil_to_rgb_array(image):
    """Converts a loaded PIL image of any mode to uint8 RGB.

    Args:
        image: a loaded `PIL.Image.Image`.

    Returns:
        `(array, conversions)`: uint8 (H, W, 3) and a tuple of conversion
        kinds applied (empty for 8-bit RGB input).
    """
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8), ()
    if mode == "P":
        # A palette is only a compact way to store RGB; transparency is not.
        if "transparency" in image.info:
            image = image.convert("RGBA")
            mode = "RGBA"
        else:
            return np.asarray(image.convert("RGB"), dtype=np.uint8), ()
    if mode == "PA":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        values = np.asarray(image, dtype=np.uint8)
        rgb = _composite_alpha(values[..., :3], values[..., 3])
        return rgb, (stats.CONVERTED_ALPHA,)
    if mode == "LA":
        values = np.asarray(image, dtype=np.uint8)
        gray = np.repeat(values[..., :1], 3, axis=-1)
        rgb = _composite_alpha(gray, values[..., 1])
        return rgb, (stats.CONVERTED_GRAYSCALE, stats.CONVERTED_ALPHA)
    if mode in _GRAY_MODES:
        gray = np.asarray(image.convert("L"), dtype=np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1), (
            stats.CONVERTED_GRAYSCALE,
        )
    if mode in _SIXTEEN_BIT_MODES:
        gray = _sixteen_bit_to_uint8(image)
        kinds = (stats.CONVERTED_GRAYSCALE, stats.CONVERTED_16BIT)
        return np.repeat(gray[..., None], 3, axis=-1), kinds
    if mode == "F":
        gray = _float_to_uint8(np.asarray(image))
        kinds = (stats.CONVERTED_GRAYSCALE, stats.CONVERTED_OTHER_MODE)
        return np.repeat(gray[..., None], 3, axis=-1), kinds
    # CMYK, YCbCr, LAB, HSV, ...: PIL knows how to reach RGB.
    return np.asarray(image.convert("RGB"), dtype=np.uint8), (
        stats.CONVERTED_OTHER_MODE,
    )


def array_to_rgb_array(values):
    """Validates / converts a decoded image array to uint8 RGB.

    Accepts (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) arrays of uint8, uint16
    (16-bit), bool, or floats in [0, 1].

    Returns:
        `(array, conversions)` as `pil_to_rgb_array`.

    Raises:
        ImageDecodeError: (kind `unreadable_image`) for other shapes/dtypes.
    """
    values = np.asarray(values)
    kinds = []
    if values.ndim == 3 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim not in (2, 3) or (
        values.ndim == 3 and values.shape[-1] not in (3, 4)
    ):
        raise ImageDecodeError(
            stats.UNREADABLE_IMAGE, f"Image array of shape {values.shape}."
        )
    if min(values.shape[:2]) < 1:
        raise ImageDecodeError(stats.EMPTY_FILE, "Image array with no pixels.")
    if values.dtype == np.uint8:
        pass
    elif values.dtype == np.bool_:
        values = values.astype(np.uint8) * 255
    elif values.dtype == np.uint16:
        values = np.round(values.astype(np.float32) * (255.0 / 65535.0))
        values = values.astype(np.uint8)
        kinds.append(stats.CONVERTED_16BIT)
    elif np.issubdtype(values.dtype, np.floating):
        values = _float_to_uint8(values)
        kinds.append(stats.CONVERTED_OTHER_MODE)
    else:
        raise ImageDecodeError(
            stats.UNREADABLE_IMAGE, f"Image array of dtype {values.dtype}."
        )
    if values.ndim == 2:
        kinds.insert(0, stats.CONVERTED_GRAYSCALE)
        values = np.repeat(values[..., None], 3, axis=-1)
    elif values.shape[-1] == 4:
        kinds.append(stats.CONVERTED_ALPHA)
        values = _composite_alpha(values[..., :3], values[..., 3])
    return np.ascontiguousarray(values), tuple(kinds)


def decode_image(
    data, max_pixels=DEFAULT_MAX_IMAGE_PIXELS, min_short_side=None
):
    """Decodes image bytes (or checks an array) into uint8 RGB.

    Grayscale, alpha, palette, 16-bit and other modes are converted to 8-bit
    RGB (reported as conversion kinds); EXIF orientation is applied.

    Args:
        data: encoded image bytes, or an image array.
        max_pixels: int. Images with more pixels are rejected from their
            header, before any pixel is decoded (decompression bombs).
        min_short_side: optional int. JPEGs much larger than needed are
            decoded at a reduced scale (DCT scaling) that keeps at least this
            many pixels on the short side, which is much faster.

    Returns:
        `(array, conversions)`: uint8 (H, W, 3) and a tuple of conversion
        kinds.

    Raises:
        ImageDecodeError: with a skip kind (`empty_file`, `unreadable_image`,
            `truncated_image`, `too_large_image`).

    Example:
    ```python
    with open("cat.jpg", "rb") as f:
        rgb, conversions = decode_image(f.read())
    ```
    """
    if isinstance(data, np.ndarray):
        values, kinds = array_to_rgb_array(data)
        if values.shape[0] * values.shape[1] > max_pixels:
            raise ImageDecodeError(
                stats.TOO_LARGE_IMAGE,
                f"Image of {values.shape[1]}x{values.shape[0]} pixels is above "
                f"the limit of {max_pixels} pixels.",
            )
        return values, kinds
    if data is None or len(data) == 0:
        raise ImageDecodeError(stats.EMPTY_FILE, "Zero-byte image file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageDecodeError(stats.TOO_LARGE_IMAGE, str(error)) from None
    except Exception as error:  # PIL raises many types on garbage input.
        raise ImageDecodeError(
            stats.UNREADABLE_IMAGE, f"Not a readable image ({error})."
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            stats.TOO_LARGE_IMAGE,
            f"Image of {width}x{height} pixels is above the limit of "
            f"{max_pixels} pixels.",
        )
    if width < 1 or height < 1:
        raise ImageDecodeError(stats.UNREADABLE_IMAGE, "Image with no pixels.")
    if min_short_side and image.format == "JPEG" and image.mode in ("RGB", "L"):
        scale = min(width, height) / min_short_side
        if scale >= 2:
            image.draft(
                image.mode, (int(width / scale) + 1, int(height / scale) + 1)
            )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except OSError as error:
        kind = (
            stats.TRUNCATED_IMAGE
            if "truncated" in str(error) or "broken data stream" in str(error)
            else stats.UNREADABLE_IMAGE
        )
        raise ImageDecodeError(
            kind, f"Cannot decode the image ({error})."
        ) from None
    except Exception as error:
        raise ImageDecodeError(
            stats.UNREADABLE_IMAGE, f"Cannot decode the image ({error})."
        ) from None
    try:
        return pil_to_rgb_array(image)
    except Exception as error:
        raise ImageDecodeError(
            stats.UNREADABLE_IMAGE,
            f"Cannot convert the {image.mode} image to RGB ({error}).",
        ) from None


def clean_caption(caption, max_chars=2000):
    """Validates a caption and normalises its whitespace.

    Args:
        caption: str, bytes or None.
        max_chars: int. Longer captions are cut (the tokenizer truncates
            anyway; this bounds the work spent on absurd captions).

    Returns:
        `(text, problem)`: the cleaned `str` ("" when unusable) and None or
        one of "missing", "empty", "not_utf8".
    """
    if caption is None:
        return "", "missing"
    if isinstance(caption, (bytes, bytearray, memoryview)):
        try:
            caption = bytes(caption).decode("utf-8")
        except UnicodeDecodeError:
            return "", "not_utf8"
    elif not isinstance(caption, str):
        return "", "missing"
    try:
        # Lone surrogates come from bytes read with `surrogateescape` or from
        # JSON "\udcxx" escapes: the text was not valid UTF-8.
        caption.encode("utf-8")
    except UnicodeEncodeError:
        return "", "not_utf8"
    caption = _WHITESPACE.sub(" ", caption).strip()[:max_chars]
    if not caption:
        return "", "empty"
    return caption, None


def clean_caption_choices(captions, max_chars=2000):
    """Validates a caption or a list of alternative captions.

    A list holds the same caption at several granularities (a phrase, a
    sentence, a full description); one of its usable entries is drawn per
    example later. Every unusable entry is reported like a bad single
    caption, and an empty list like a missing caption.

    Args:
        captions: str, bytes, None, or a list or tuple of those.
        max_chars: int. Longer captions are cut (see `clean_caption`).

    Returns:
        `(texts, problems)`: the usable cleaned captions, in order (empty
        when none is usable), and the problems of the others (each one of
        "missing", "empty", "not_utf8").

    Example:
    ```python
    clean_caption_choices(["a cat", "  ", "a black cat on a mat."])
    # (["a cat", "a black cat on a mat."], ["empty"])
    ```
    """
    if not isinstance(captions, (list, tuple)):
        text, problem = clean_caption(captions, max_chars)
        return ([text] if text else []), ([problem] if problem else [])
    if not captions:
        return [], ["missing"]
    texts, problems = [], []
    for caption in captions:
        text, problem = clean_caption(caption, max_chars)
        if problem:
            problems.append(problem)
        else:
            texts.append(text)
    return texts, problems
