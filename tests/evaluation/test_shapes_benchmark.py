"""Helpers of the shapes evaluation suite."""

from keras_tips.data import shapes
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
