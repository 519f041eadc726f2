"""Helpers of the shapes evaluation suite."""

import numpy as np
import pytest

from keras_tips.data import shapes
from keras_tips.evaluation.shapes_benchmark import SEGMENTATION_TASKS
from keras_tips.evaluation.shapes_benchmark import baseline_metrics
from keras_tips.evaluation.shapes_benchmark import baseline_table
from keras_tips.evaluation.shapes_benchmark import format_table
from keras_tips.evaluation.shapes_benchmark import load_split
from keras_tips.evaluation.shapes_benchmark import main_object_colour


def test_main_object_colour_is_the_most_visible_objects():
    dataset = shapes.ShapesDataset("test", 20, 56)
    for index in range(20):
        example = dataset[index]
        colour = shapes.COLOUR_NAMES[main_object_colour(example)]
        largest = max(example["objects"], key=lambda o: o["visible_pixels"])
        assert colour == largest["colour"]
        # The zero-shot shape label names the same object.
        assert shapes.SHAPE_CLASSES[example["label"]] == largest["shape"]


def test_load_split_shapes_and_ranges():
    split = load_split("validation", 5, 56)
    assert split["images"].shape == (5, 56, 56, 3)
    assert 0.0 <= split["images"].min() and split["images"].max() <= 1.0
    assert split["class_mask"].shape == (5, 56, 56)
    assert len(split["synthetic_captions"]) == 5


def test_format_table_side_by_side():
    table = format_table({"a": {"m1": 0.5, "m2": 1.0}, "b": {"m1": 0.25}}, title="T")
    lines = table.splitlines()
    assert lines[0] == "### T"
    assert "| metric | a | b |" in lines
    assert "| m1 | 0.500 | 0.250 |" in lines
    assert "| m2 | 1.000 |  |" in lines


def test_load_split_has_colour_and_foreground_masks():
    split = load_split("test", 6, 84, max_objects=3, object_scale=1.5)
    np.testing.assert_array_equal(split["foreground_mask"], split["class_mask"] > 0)
    np.testing.assert_array_equal(split["colour_mask"] > 0, split["foreground_mask"] > 0)
    assert split["colour_mask"].max() <= len(shapes.COLOUR_NAMES)


def test_baselines_need_no_model_and_bracket_the_task():
    train = load_split("validation", 20, 84, max_objects=3, object_scale=1.5)
    test = load_split("test", 20, 84, max_objects=3, object_scale=1.5)
    results = baseline_metrics(train, test)
    for task, (key, num_classes) in SEGMENTATION_TASKS.items():
        # Background everywhere: the background IoU alone, averaged over the
        # classes present.
        background = (test[key] == 0).mean()
        present = len(np.unique(test[key]))
        assert results[f"trivial/{task}/miou"] == pytest.approx(background / present)
        # A patch grid of 6 x 6 draws objects far better than that, but not
        # perfectly.
        assert results[f"trivial/{task}/miou"] < results[f"ceiling/{task}/miou"] < 1.0
    depth = test["depth"]
    assert results["trivial/depth_probe/rmse"] == pytest.approx(
        np.sqrt(np.mean((depth - train["depth"].mean()) ** 2)), rel=1e-5
    )
    assert results["chance/zero_shot_top1"] == pytest.approx(1 / 6)


def test_baseline_table_puts_baselines_beside_each_metric():
    results = {
        "zero_shot/cls_1/top1": 0.7,
        "segmentation_probe/miou": 0.5,
        "random_init/segmentation_probe/miou": 0.2,
        "trivial/segmentation_probe/miou": 0.1,
        "ceiling/segmentation_probe/miou": 0.8,
        "chance/zero_shot_top1": 1 / 6,
    }
    lines = baseline_table(results).splitlines()
    assert lines[0] == "| metric | trained | trivial | random_init | ceiling | chance |"
    assert "| segmentation_probe/miou | 0.500 | 0.100 | 0.200 | 0.800 |  |" in lines
    assert "| zero_shot/cls_1/top1 | 0.700 |  |  |  | 0.167 |" in lines
    assert len(lines) == 4  # baseline keys get no rows of their own
