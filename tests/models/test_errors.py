"""Wrong inputs get clear errors, never a crash deep inside a backend."""

import os
import shutil

import numpy as np
import pytest

from keras_tips import TIPSModel
from keras_tips.errors import CheckpointError
from tests.conftest import convert_reference
from tests.conftest import reference_dir

pytestmark = pytest.mark.multibackend


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 50, 56, 3), "float32"), "multiples of the patch size"),
        (np.zeros((2, 56, 56), "float32"), "RGB, channels last"),
        (np.zeros((56,), "float32"), "shape"),
        (np.zeros((1, 2, 56, 56, 3), "float32"), "shape"),
        (np.zeros((2, 56, 56, 4), "float32"), "RGB, channels last"),
        (np.zeros((2, 3, 56, 56), "float32"), "channels-first"),
        (np.zeros((2, 56, 56, 3), "int64"), "astype\\('uint8'\\)"),
        (np.zeros((2, 56, 56, 3), "bool"), "floats in \\[0, 1\\] or uint8"),
        (np.full((1, 56, 56, 3), np.nan, "float32"), "NaN"),
        (np.full((1, 56, 56, 3), 255.0, "float32"), "\\[0, 1\\]"),
        (np.zeros((0, 56, 56, 3), "float32"), "empty"),
        (np.array([["a"]]), "numeric"),
    ],
)
def test_bad_images(tiny_model, images, message):
    with pytest.raises(ValueError, match=message):
        tiny_model.encode_images(images)


def test_uint8_images_are_scaled_as_the_image_converter_scales_them(tiny_model):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 56, 70, 3), dtype=np.uint8)
    from_uint8 = tiny_model.encode_images(pixels)
    from_float = tiny_model.encode_images(pixels.astype("float32") / 255)
    for key in ("cls_1", "cls_2", "patches"):
        np.testing.assert_array_equal(from_uint8[key], from_float[key])


def test_bad_patch_mask(tiny_model):
    with pytest.raises(ValueError, match="patch_mask"):
        tiny_model.encode_images(np.zeros((2, 56, 56, 3), "float32"), patch_mask=np.zeros((2, 5)))


def test_bad_texts(tiny_model):
    with pytest.raises(ValueError, match="empty list"):
        tiny_model.encode_texts([])
    with pytest.raises(ValueError, match="not a string"):
        tiny_model.encode_texts([None])


def test_bad_cls_token(tiny_model):
    with pytest.raises(ValueError, match="cls_token"):
        tiny_model.classify(np.zeros((1, 56, 56, 3), "float32"), ["a"], cls_token="cls_3")


def test_preset_dir_with_a_missing_file(reference_presets, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(reference_presets["tips_tiny"], broken)
    os.remove(broken / "model.weights.h5")
    with pytest.raises((ValueError, FileNotFoundError), match="model.weights.h5"):
        TIPSModel.from_preset(str(broken))
    missing_config = tmp_path / "no_config"
    shutil.copytree(reference_presets["tips_tiny"], missing_config)
    os.remove(missing_config / "config.json")
    with pytest.raises((ValueError, FileNotFoundError), match="config.json"):
        TIPSModel.from_preset(str(missing_config))


def test_checkpoint_of_a_different_model(tmp_path):
    tiny, swiglu = reference_dir("tips_tiny"), reference_dir("tips_tiny_swiglu")
    from keras_tips import convert_official_checkpoint

    # Text checkpoint passed as the vision one.
    with pytest.raises(CheckpointError, match="cls_token"):
        convert_official_checkpoint(
            tmp_path / "a", vision_path=f"{tiny}/text.npz", text_path=f"{tiny}/text.npz",
            tokenizer_path=f"{tiny}/tokenizer.model", vision_num_heads=4, text_num_heads=4,
        )
    # Towers of two different models: the tokenizer does not fit the text tower.
    with pytest.raises(CheckpointError, match="do not\\s+belong together|pieces"):
        convert_official_checkpoint(
            tmp_path / "b", vision_path=f"{tiny}/vision.npz", text_path=f"{swiglu}/text.npz",
            tokenizer_path=f"{tiny}/tokenizer.model", vision_num_heads=4, text_num_heads=3,
            max_sequence_length=24,
        )
    # A non-standard width needs an explicit head count.
    with pytest.raises(CheckpointError, match="num_heads"):
        convert_official_checkpoint(
            tmp_path / "c", vision_path=f"{tiny}/vision.npz", text_path=f"{tiny}/text.npz",
            tokenizer_path=f"{tiny}/tokenizer.model",
        )


def _write_modified(tmp_path, change):
    state = dict(np.load(reference_dir("tips_tiny") + "/vision.npz", allow_pickle=False))
    change(state)
    path = tmp_path / "vision.npz"
    np.savez(path, **state)
    return str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("blocks.1.ls2.gamma"), "missing keys \\['blocks.1.ls2.gamma'\\]"),
        (lambda s: s.__setitem__("blocks.0.extra", np.zeros(3)), "unexpected keys \\['blocks.0.extra'\\]"),
        (lambda s: s.__setitem__("norm.bias", np.zeros(65, "float32")), "Shape mismatch for 'norm.bias'"),
    ],
)
def test_checkpoint_key_and_shape_errors(tmp_path, change, message):
    from keras_tips import convert_official_checkpoint

    tiny = reference_dir("tips_tiny")
    with pytest.raises(CheckpointError, match=message):
        convert_official_checkpoint(
            tmp_path / "out", vision_path=_write_modified(tmp_path, change),
            text_path=f"{tiny}/text.npz", tokenizer_path=f"{tiny}/tokenizer.model",
            vision_num_heads=4, text_num_heads=4, max_sequence_length=16,
        )
    assert not (tmp_path / "out").exists()


def test_truncated_and_pickled_checkpoints(tmp_path):
    from keras_tips.conversion.official_checkpoint import read_npz

    data = open(reference_dir("tips_tiny") + "/vision.npz", "rb").read()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="complete"):
        read_npz(truncated)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="without pickle"):
        read_npz(pickled)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_npz(tmp_path / "nope.npz")


def test_converter_refuses_to_overwrite(tmp_path):
    convert_reference("tips_tiny", tmp_path / "p")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_reference("tips_tiny", tmp_path / "p")
