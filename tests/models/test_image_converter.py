"""The official preprocessing: squash resize (bilinear, antialiased), [0, 1].

References: PIL's `resize(BILINEAR)` (in float mode "F", so that PIL's
uint8 rounding does not hide a difference) and `torch`'s
`interpolate(..., mode="bilinear", antialias=True)`, the resizes of the
official notebooks and of Hugging Face's `Tipsv2ImageProcessor`, on
scikit-image's non-square photographs.
"""

import keras
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from keras_tips.data.image_files import load_image
from keras_tips.models.tips_image_converter import TIPSImageConverter

# The float references agree with each other to ~1e-5; 1e-4 is far inside
# the 1/255 a uint8 pipeline rounds to.
ATOL = 1e-4
SIZES = ((56, 84), (448, 448))


def _photos():
    photos = {name: getattr(skimage.data, name)() for name in ("chelsea", "rocket")}
    # A small photo that is upsampled to 448 and downsampled to 56 x 84.
    photos["small"] = np.asarray(
        Image.fromarray(photos["chelsea"]).resize((131, 83), Image.BILINEAR)
    )
    return photos


def pil_reference(pixels, size):
    """PIL's bilinear (antialiased) resize of each channel, in float."""
    channels = [
        np.asarray(
            Image.fromarray(pixels[..., c].astype("float32"), mode="F").resize(
                (size[1], size[0]), Image.BILINEAR
            )
        )
        for c in range(3)
    ]
    return np.stack(channels, axis=-1) / 255.0


def torch_reference(pixels, size):
    x = torch.tensor(pixels).permute(2, 0, 1)[None].float() / 255.0
    y = torch.nn.functional.interpolate(
        x, size=size, mode="bilinear", antialias=True, align_corners=False
    )
    return y[0].permute(1, 2, 0).numpy()


@pytest.mark.multibackend
@pytest.mark.parametrize("size", SIZES)
def test_squash_resize_matches_pil_and_torch_on_non_square_photos(size):
    for name, pixels in _photos().items():
        assert pixels.shape[0] != pixels.shape[1], name
        converted = keras.ops.convert_to_numpy(TIPSImageConverter(size)(pixels))
        assert converted.shape == (*size, 3) and converted.dtype == np.float32
        np.testing.assert_allclose(
            converted, pil_reference(pixels, size), rtol=0, atol=ATOL, err_msg=name
        )
        np.testing.assert_allclose(
            converted, torch_reference(pixels, size), rtol=0, atol=ATOL, err_msg=name
        )


@pytest.mark.multibackend
def test_image_files_load_through_the_converter(tmp_path):
    pixels = _photos()["small"]
    path = tmp_path / "small.png"
    Image.fromarray(pixels).save(path)
    loaded = load_image(str(path), (56, 84))
    np.testing.assert_allclose(
        loaded, torch_reference(pixels, (56, 84)), rtol=0, atol=ATOL
    )


def test_uint8_and_float_inputs_agree_and_batches_and_lists_work():
    pixels = _photos()["small"]
    as_uint8 = TIPSImageConverter((56, 56))
    as_float = TIPSImageConverter((56, 56), scale=None)
    from_uint8 = keras.ops.convert_to_numpy(as_uint8(pixels[None]))
    from_float = keras.ops.convert_to_numpy(as_float(pixels[None] / np.float32(255)))
    np.testing.assert_allclose(from_uint8, from_float, rtol=0, atol=1e-6)
    # A list of differently sized images gives one output each.
    outputs = as_uint8([pixels, pixels[:50, :70]])
    assert [tuple(keras.ops.shape(x)) for x in outputs] == [(56, 56, 3)] * 2


def test_no_crop_whatever_the_saved_config_says():
    converter = TIPSImageConverter((56, 56))
    config = converter.get_config()
    assert config["scale"] == pytest.approx(1 / 255)
    assert "crop_to_aspect_ratio" not in config
    # Presets written before record keras-hub's crop default: still squashed.
    legacy = TIPSImageConverter.from_config(
        {**config, "crop_to_aspect_ratio": True, "interpolation": "bilinear"}
    )
    pixels = _photos()["small"]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(legacy(pixels)),
        keras.ops.convert_to_numpy(converter(pixels)),
    )


def test_other_preprocessing_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="crop_to_aspect_ratio=False"):
        TIPSImageConverter((56, 56), crop_to_aspect_ratio=True)
    with pytest.raises(ValueError, match="interpolation='bilinear'"):
        TIPSImageConverter((56, 56), interpolation="bicubic")
    with pytest.raises(ValueError, match="mean/std"):
        TIPSImageConverter((56, 56), offset=-0.5)
    with pytest.raises(ValueError, match="multiples of 14"):
        TIPSImageConverter((50, 56))
