"""Parity of the DPT heads with the official decoders on the reference heads.

The three reference decoders (`tests/testdata/dpt_tiny`, random weights in
the released Scenic layout) are converted with the public converter, loaded
with `TIPSDPTHead.from_preset` and reproduce the official outputs within
1e-5 (float32): from the official per-level features, and end to end from
images through the reference image tower, at the input size and at the
head's own resolution.
"""

import numpy as np
import pytest

from tests.conftest import DPT_TASKS
from tests.conftest import reference_config
from tests.conftest import reference_golden

pytestmark = pytest.mark.multibackend
ATOL = 1e-5


@pytest.fixture(scope="module")
def golden():
    return reference_golden("dpt_tiny")


@pytest.fixture(scope="module")
def heads(dpt_presets):
    from keras_tips import TIPSDPTHead

    return {task: TIPSDPTHead.from_preset(dpt_presets[task]) for task in DPT_TASKS}


def nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def features(golden, prefix):
    """The official (cls, patch_map) pair of each level, channels last."""
    return [
        (golden[f"{prefix}_feat_cls"][level], nhwc(golden[f"{prefix}_feat_patches"][level]))
        for level in range(4)
    ]


def assert_close(actual, expected):
    import keras

    actual = keras.ops.convert_to_numpy(actual)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("task", DPT_TASKS)
def test_per_level_features(heads, golden, task):
    head = heads[task]
    for index, (height, width) in enumerate(reference_config("dpt_tiny")["image_sizes"]):
        prefix = f"image_{index}"
        levels = features(golden, prefix)
        assert_close(
            head(levels, image_size=(height, width)), nhwc(golden[f"{prefix}_{task}"])
        )
        assert_close(head(levels), nhwc(golden[f"{prefix}_{task}_native"]))
    # Four different levels: a level fed to the wrong stage would show.
    assert_close(
        head(features(golden, "distinct")), nhwc(golden[f"distinct_{task}_native"])
    )


# Every task and both image shapes (square 4 x 4, portrait 5 x 3 patches),
# without compiling every combination.
END_TO_END = [("segmentation", 0), ("segmentation", 1), ("depth", 1), ("normals", 0)]


@pytest.mark.parametrize("task,index", END_TO_END)
def test_end_to_end_from_images(tiny_model, heads, golden, task, index):
    images = nhwc(golden[f"image_{index}"])
    maps = tiny_model.predict_dense(images, heads[task])
    assert_close(maps, nhwc(golden[f"image_{index}_{task}"]))
    maps = tiny_model.predict_dense(images, heads[task], native_resolution=True)
    assert maps.shape[1:3] == tuple(reference_config("dpt_tiny")["native_sizes"][index])
    assert_close(maps, nhwc(golden[f"image_{index}_{task}_native"]))


def test_encoder_features_are_the_official_levels(tiny_model, golden):
    """The blocks of `intermediate_layers` after the final norm, CLS1 and
    the patch map, as the notebook's `get_intermediate_layers` gives them."""
    blocks = reference_config("dpt_tiny")["intermediate_layers"]
    for index in range(2):
        outputs = tiny_model.encode_images(
            nhwc(golden[f"image_{index}"]), return_intermediates=True
        )
        patches = golden[f"image_{index}_feat_patches"]  # (4, B, D, h, w)
        for level, block in enumerate(blocks):
            assert_close(
                outputs["intermediate_cls_1"][:, block], golden[f"image_{index}_feat_cls"][level]
            )
            expected = nhwc(patches[level]).reshape(patches.shape[1], -1, patches.shape[2])
            assert_close(outputs["intermediate_patches"][:, block], expected)


def test_depth_bin_centers(heads, golden):
    np.testing.assert_allclose(
        heads["depth"].bin_centers, golden["depth_bin_centers"], atol=1e-6, rtol=0
    )


def test_notebook_normals_post_processing(golden):
    from keras_tips import normalize_normals

    raw = nhwc(golden["image_1_normals_native"])
    expected = nhwc(golden["image_1_normals_notebook"])
    assert_close(normalize_normals(raw, image_size=expected.shape[1:3]), expected)
    unit = normalize_normals(raw)
    assert_close(unit, raw / np.linalg.norm(raw, axis=-1, keepdims=True))
    assert_close(normalize_normals(raw[0]), unit[0])
