"""Multi-crop augmentations, the evaluation transform and patch masks."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_tips.data import AugmentationConfig
from keras_tips.data import EvalTransform
from keras_tips.data import MultiCropTransform
from keras_tips.data import PatchMaskConfig
from keras_tips.data import PatchMasker
from keras_tips.data import block_patch_mask
from keras_tips.data import random_patch_mask
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
    transform = MultiCropTransform(28, 3, 14)
    first = transform(image, np.random.default_rng(5))
    again = transform(image, np.random.default_rng(5))
    other = transform(image, np.random.default_rng(6))
    global_crop, local_crops, flipped = first
    assert global_crop.shape == (28, 28, 3) and global_crop.dtype == np.float32
    assert (
        local_crops.shape == (3, 14, 14, 3) and local_crops.dtype == np.float32
    )
    assert 0 <= global_crop.min() and global_crop.max() <= 1
    assert isinstance(flipped, bool)
    np.testing.assert_array_equal(global_crop, again[0])
    np.testing.assert_array_equal(local_crops, again[1])
    assert not np.array_equal(global_crop, other[0])


def test_full_crop_without_augmentation_is_a_resize():
    image = np.random.default_rng(0).integers(
        0, 256, (28, 28, 3), dtype=np.uint8
    )
    config = dataclasses.replace(
        AugmentationConfig.none(),
        global_crop_scale=(1.0, 1.0),
        crop_aspect_ratio=(1.0, 1.0),
    )
    global_crop, _, flipped = MultiCropTransform(28, 0, 14, config)(
        image, np.random.default_rng(0)
    )
    np.testing.assert_allclose(global_crop, image / 255.0, atol=1e-6)
    assert not flipped


@pytest.mark.parametrize(
    "name, changes",
    [
        ("grayscale_probability", {"grayscale_probability": 1.0}),
        ("solarize", {"global_solarize_probability": 1.0}),
        ("flip", {"flip_probability": 1.0}),
    ],
)
def test_each_augmentation_acts(name, changes):
    image = np.random.default_rng(0).integers(
        0, 256, (28, 28, 3), dtype=np.uint8
    )
    config = dataclasses.replace(
        AugmentationConfig.none(),
        global_crop_scale=(1.0, 1.0),
        crop_aspect_ratio=(1.0, 1.0),
        **changes,
    )
    crop, _, flipped = MultiCropTransform(28, 0, 14, config)(
        image, np.random.default_rng(0)
    )
    values = image / 255.0
    if name == "grayscale_probability":
        np.testing.assert_allclose(crop[..., 0], crop[..., 1])
        np.testing.assert_allclose(crop[..., 0], crop[..., 2])
    elif name == "solarize":
        expected = np.where(image >= 128, 255 - image, image) / 255.0
        np.testing.assert_allclose(crop, expected, atol=1e-6)
    else:
        assert flipped
        np.testing.assert_allclose(crop, values[:, ::-1], atol=1e-6)


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
    with pytest.raises(ValueError, match="global_crop_scale"):
        AugmentationConfig(global_crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="flip_probability"):
        AugmentationConfig(flip_probability=2.0)
    with pytest.raises(ValueError, match="mode"):
        PatchMaskConfig(mode="grid")
