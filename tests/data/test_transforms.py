"""Multi-crop augmentations, the evaluation transform and patch masks."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_tips.data import AugmentationConfig
from keras_tips.data import CropAugmentation
from keras_tips.data import EvalTransform
from keras_tips.data import MultiCropTransform
from keras_tips.data import PatchMaskConfig
from keras_tips.data import PatchMasker
from keras_tips.data import block_patch_mask
from keras_tips.data import random_patch_mask
from keras_tips.data.transforms import CAPTIONED_CROP
from keras_tips.data.transforms import adjust_hue
from keras_tips.data.transforms import sample_crop_box
from keras_tips.data.transforms import swap_left_right


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 20),
    cols=st.integers(1, 20),
    ratio=st.floats(0.0, 1.0),
    mode=st.sampled_from(["random", "block"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_masks_have_exactly_the_configured_count(rows, cols, ratio, mode, seed):
    rng = np.random.default_rng(seed)
    make = random_patch_mask if mode == "random" else block_patch_mask
    mask = make((rows, cols), ratio, rng)
    assert mask.dtype == bool and mask.shape == (rows * cols,)
    assert mask.sum() == round(ratio * rows * cols)


def test_block_masks_are_blocky():
    """Block masks put masked patches next to each other; random ones less."""

    def masked_neighbour_fraction(mask, grid):
        mask = mask.reshape(grid, grid)
        right = mask[:, :-1] & mask[:, 1:]
        down = mask[:-1, :] & mask[1:, :]
        return (right.sum() + down.sum()) / (2 * mask.sum())

    rng = np.random.default_rng(0)
    block = np.mean(
        [
            masked_neighbour_fraction(block_patch_mask(16, 0.3, rng), 16)
            for _ in range(20)
        ]
    )
    uniform = np.mean(
        [
            masked_neighbour_fraction(random_patch_mask(16, 0.3, rng), 16)
            for _ in range(20)
        ]
    )
    assert block > uniform + 0.25


def test_masker_probability():
    masker = PatchMasker(4, PatchMaskConfig(ratio=0.5, probability=0.25))
    rng = np.random.default_rng(0)
    counts = np.array([masker(rng).sum() for _ in range(400)])
    assert set(counts.tolist()) == {0, 8}
    assert 60 <= (counts == 8).sum() <= 140


@settings(max_examples=50, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    low=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_crop_boxes_stay_inside_the_image(height, width, low, seed):
    left, top, crop_width, crop_height = sample_crop_box(
        height, width, (low, 1.0), (3 / 4, 4 / 3), np.random.default_rng(seed)
    )
    assert 0 <= left and 0 <= top and crop_width >= 1 and crop_height >= 1
    assert left + crop_width <= width and top + crop_height <= height


def test_crop_scale_is_respected():
    rng = np.random.default_rng(0)
    areas = []
    for _ in range(200):
        _, _, w, h = sample_crop_box(
            200, 300, (0.05, 0.32), (3 / 4, 4 / 3), rng
        )
        areas.append(w * h / (200 * 300))
    assert 0.04 <= min(areas) and max(areas) <= 0.33


def test_multi_crop_shapes_ranges_and_determinism():
    image = np.random.default_rng(0).integers(
        0, 256, (50, 70, 3), dtype=np.uint8
    )
    transform = MultiCropTransform(
        28, 3, 14, AugmentationConfig(contrastive_crop=CAPTIONED_CROP)
    )
    first = transform(image, np.random.default_rng(5))
    again = transform(image, np.random.default_rng(5))
    other = transform(image, np.random.default_rng(6))
    assert first.global_crop.shape == (28, 28, 3)
    assert first.contrastive_crop.shape == (28, 28, 3)
    assert first.local_crops.shape == (3, 14, 14, 3)
    for crop in (first.global_crop, first.local_crops, first.contrastive_crop):
        assert crop.dtype == np.float32
        assert 0 <= crop.min() and crop.max() <= 1
    assert isinstance(first.captions_flipped, bool)
    for name in ("global_crop", "local_crops", "contrastive_crop"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert not np.array_equal(first.global_crop, other.global_crop)


def _whole_image(crop):
    return dataclasses.replace(crop, scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0))


def test_full_crop_without_augmentation_is_a_resize():
    image = np.random.default_rng(0).integers(
        0, 256, (28, 28, 3), dtype=np.uint8
    )
    config = AugmentationConfig.none()
    config = dataclasses.replace(
        config,
        global_crop=_whole_image(config.global_crop),
        contrastive_crop=_whole_image(config.contrastive_crop),
    )
    crops = MultiCropTransform(28, 0, 14, config)(
        image, np.random.default_rng(0)
    )
    np.testing.assert_allclose(crops.global_crop, image / 255.0, atol=1e-6)
    np.testing.assert_allclose(crops.contrastive_crop, image / 255.0, atol=1e-6)
    assert not crops.captions_flipped


@pytest.mark.parametrize(
    "name, changes",
    [
        ("grayscale", {"grayscale_probability": 1.0}),
        ("solarize", {"solarize_probability": 1.0}),
        ("flip", {"flip_probability": 1.0}),
        ("blur", {"blur_probability": 1.0, "blur_sigma": (8.0, 8.0)}),
        ("colour", {"color_jitter_probability": 1.0}),
    ],
)
@pytest.mark.parametrize("kind", ["global_crop", "local_crop", "contrastive_crop"])
def test_each_augmentation_acts_on_its_crop_kind_only(kind, name, changes):
    image = np.random.default_rng(0).integers(
        0, 256, (28, 28, 3), dtype=np.uint8
    )
    config = AugmentationConfig.none()
    crops = {
        k: _whole_image(getattr(config, k))
        for k in ("global_crop", "local_crop", "contrastive_crop")
    }
    crops[kind] = dataclasses.replace(crops[kind], **changes)
    config = dataclasses.replace(config, **crops)
    result = MultiCropTransform(28, 1, 28, config)(
        image, np.random.default_rng(0)
    )
    outputs = {
        "global_crop": result.global_crop,
        "local_crop": result.local_crops[0],
        "contrastive_crop": result.contrastive_crop,
    }
    values = image / 255.0
    for other, crop in outputs.items():
        if other != kind:
            np.testing.assert_allclose(crop, values, atol=1e-6, err_msg=other)
    crop = outputs[kind]
    if name == "grayscale":
        np.testing.assert_allclose(crop[..., 0], crop[..., 1])
        np.testing.assert_allclose(crop[..., 0], crop[..., 2])
    elif name == "solarize":
        expected = np.where(image >= 128, 255 - image, image) / 255.0
        np.testing.assert_allclose(crop, expected, atol=1e-6)
    elif name == "flip":
        np.testing.assert_allclose(crop, values[:, ::-1], atol=1e-6)
    else:
        assert np.abs(crop - values).max() > 0.05
    # Captions follow the contrastive crop's flip, and no other.
    assert result.captions_flipped == (name == "flip" and kind == "contrastive_crop")


def test_without_a_contrastive_crop_captions_follow_the_global_crop():
    image = np.random.default_rng(0).integers(
        0, 256, (28, 28, 3), dtype=np.uint8
    )
    config = AugmentationConfig.none(separate_contrastive_crop=False)
    config = dataclasses.replace(
        config,
        global_crop=dataclasses.replace(config.global_crop, flip_probability=1.0),
    )
    result = MultiCropTransform(28, 0, 14, config)(
        image, np.random.default_rng(0)
    )
    assert result.contrastive_crop is None
    assert result.captions_flipped


def test_captioned_crop_keeps_colours_and_most_of_the_image():
    """The caption-paired crop has no photometric change and a mild scale
    range; the self-distillation crops keep DINO's photometric stack. By
    default there is no separate caption-paired crop (the paper's one
    global crop)."""
    assert AugmentationConfig().contrastive_crop is None
    config = AugmentationConfig(contrastive_crop=CAPTIONED_CROP)
    contrastive = config.contrastive_crop
    assert not contrastive.photometric
    assert contrastive.scale[0] >= 0.9 and contrastive.flip_probability == 0.5
    assert config.swap_left_right_on_flip
    assert config.global_crop.photometric and config.local_crop.photometric
    assert config.global_crop.solarize_probability > 0
    assert config.local_crop.scale[1] < config.global_crop.scale[1]


def test_hue_rotation_turns_red_into_green():
    from PIL import Image

    red = Image.new("RGB", (4, 4), (255, 0, 0))
    green = np.asarray(adjust_hue(red, 1 / 3))
    assert green[0, 0, 1] > 200 and green[0, 0, 0] < 60 and green[0, 0, 2] < 60


def test_eval_transform_centre_crop():
    image = np.zeros((30, 60, 3), dtype=np.uint8)
    image[:, 15:45] = 200
    out = EvalTransform(14)(image)
    assert out.shape == (14, 14, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 2:-2], 200 / 255, atol=1e-6)
    with pytest.raises(ValueError):
        EvalTransform(14, crop_fraction=0.0)


def test_swap_left_right():
    assert (
        swap_left_right("top left, Right side, leftover")
        == "top right, Left side, leftover"
    )


def test_config_validation():
    with pytest.raises(ValueError, match="scale"):
        CropAugmentation(scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="scale"):
        CropAugmentation(scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="flip_probability"):
        CropAugmentation(flip_probability=2.0)
    with pytest.raises(ValueError, match="solarize_threshold"):
        CropAugmentation(solarize_threshold=300)
    with pytest.raises(ValueError, match="global_crop.*CropAugmentation"):
        AugmentationConfig(global_crop=0.5)
    with pytest.raises(ValueError, match="local_crop.*CropAugmentation"):
        AugmentationConfig(local_crop=None)
    # Dicts (JSON, --set) become CropAugmentation.
    config = AugmentationConfig(global_crop={"scale": (0.5, 1.0)})
    assert config.global_crop == CropAugmentation(scale=(0.5, 1.0))
    with pytest.raises(ValueError, match="mode"):
        PatchMaskConfig(mode="grid")
