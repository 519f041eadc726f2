"""get_config round trips and layer behaviour."""

import keras
import numpy as np
import pytest

from keras_tips import TIPSBackbone
from keras_tips import TIPSTextEncoder
from keras_tips import TIPSVisionEncoder
from keras_tips.layers import ContrastiveHead
from keras_tips.layers import DropPath
from keras_tips.layers import FusedSwiGLU

pytestmark = pytest.mark.multibackend


def _vision(**kwargs):
    return TIPSVisionEncoder(64, 2, 4, 256, position_grid_size=4, **kwargs)


def test_encoder_configs_round_trip():
    for layer in (
        _vision(ffn_type="swiglu", drop_path_rate=0.1),
        TIPSTextEncoder(96, 64, 2, 4, 256, max_sequence_length=16),
        ContrastiveHead(temperature=0.05),
        FusedSwiGLU(32),
    ):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_backbone_config_and_outputs():
    backbone = TIPSBackbone(_vision(), TIPSTextEncoder(96, 64, 2, 4, 256, max_sequence_length=16))
    clone = TIPSBackbone.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    outputs = backbone({
        "images": np.random.rand(3, 28, 42, 3).astype("float32"),
        "token_ids": np.ones((2, 16), "int32"),
        "padding_mask": np.ones((2, 16), "bool"),
    })
    assert tuple(outputs["patches"].shape) == (3, 6, 64)
    assert tuple(outputs["logits"].shape) == (3, 2)
    assert tuple(outputs["text_embeddings"].shape) == (2, 64)


def test_value_patches_and_drop_path():
    encoder = _vision(drop_path_rate=0.5)
    images = np.random.rand(4, 28, 28, 3).astype("float32")
    out = encoder(images, return_value_patches=True)
    assert tuple(out["value_patches"].shape) == (4, 4, 64)
    a = keras.ops.convert_to_numpy(encoder(images, training=True)["cls_1"])
    b = keras.ops.convert_to_numpy(encoder(images, training=True)["cls_1"])
    c = keras.ops.convert_to_numpy(encoder(images)["cls_1"])
    d = keras.ops.convert_to_numpy(encoder(images)["cls_1"])
    np.testing.assert_array_equal(c, d)
    assert np.abs(a - b).max() > 0
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_mixed_precision_forward():
    encoder = _vision(dtype="mixed_bfloat16")
    out = encoder(np.random.rand(2, 28, 28, 3).astype("float32"))
    assert keras.backend.standardize_dtype(out["cls_1"].dtype) == "bfloat16"
    assert encoder.cls_token.dtype == "float32"


def test_a_preset_loads_in_another_dtype_towers_included(tiny_model, reference_presets):
    from keras_tips import TIPSModel

    model = TIPSModel.from_preset(reference_presets["tips_tiny"], dtype="bfloat16")
    backbone = model.backbone
    for layer in (backbone, backbone.vision_encoder, backbone.text_encoder):
        assert layer.dtype_policy.name == "bfloat16", layer.name
    assert tiny_model.backbone.vision_encoder.dtype_policy.name == "float32"
    images = np.random.default_rng(0).random((2, 56, 56, 3), dtype="float32")
    low = model.encode_images(images)["cls_1"]
    full = tiny_model.encode_images(images)["cls_1"]
    assert low.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: close to float32, but not equal.
    assert 0 < np.abs(low - full).max() < 0.05 * np.abs(full).max()
