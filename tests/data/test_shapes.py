"""The embedded shapes dataset: captions agree with masks; fixed splits."""

import re

import numpy as np
import pytest

from keras_tips.data import PipelineConfig
from keras_tips.data import PretrainingPipeline
from keras_tips.data import SHAPE_CLASSES
from keras_tips.data import ShapesDataset
from keras_tips.data import SkimagePhotosSource
from keras_tips.data import decoding
from keras_tips.data import shapes
from keras_tips.data import stats

PHRASE = re.compile(
    r"^an? (small|large) (\w+) (\w+) in the ([a-z ]+?)"
    r"(?:, partly behind (.+))?$"
)
OCCLUDER = re.compile(r"^the (\w+) (\w+)$")
COUNT_WORDS = {"two": 2, "three": 3, "four": 4}


def parse_synthetic_caption(caption):
    """-> (stated count, [(size, colour, shape, region, [(colour, shape)])])."""
    assert caption.endswith(".")
    caption = caption[:-1]
    count = 1
    if ": " in caption:
        prefix, caption = caption.split(": ", 1)
        count_word, noun = prefix.split(" ")
        assert noun == "shapes"
        count = COUNT_WORDS[count_word]
    described = []
    for phrase in caption.split("; "):
        match = PHRASE.match(phrase)
        assert match, phrase
        size, colour, shape, region, behind = match.groups()
        occluders = []
        if behind:
            for name in behind.split(" and "):
                occluder = OCCLUDER.match(name)
                assert occluder, name
                occluders.append(occluder.groups())
        described.append((size, colour, shape, region, occluders))
    return count, described


def region_slices(region, size):
    row, col = divmod(shapes.REGIONS.index(region), 3)
    bounds = [0, size // 3, (2 * size) // 3, size]
    return slice(bounds[row], bounds[row + 1]), slice(
        bounds[col], bounds[col + 1]
    )


@pytest.mark.parametrize("image_size", [56, 97])
def test_synthetic_captions_agree_with_masks_and_pixels(image_size):
    dataset = ShapesDataset(
        "validation", num_examples=80, image_size=image_size, seed=1
    )
    for index in range(len(dataset)):
        example = dataset[index]
        class_mask = example["class_mask"]
        instance_mask = example["instance_mask"]
        image = example["image"].astype(int)
        assert example["image"].dtype == np.uint8
        assert example["image"].shape == (image_size, image_size, 3)
        assert (
            class_mask.dtype == np.int32
            and example["depth"].dtype == np.float32
        )
        objects = example["objects"]
        count, described = parse_synthetic_caption(example["synthetic_caption"])

        # Every object in the masks is named once, and nothing else is.
        visible_ids = set(np.unique(instance_mask).tolist()) - {0}
        assert count == len(described) == len(objects) == len(visible_ids)
        assert visible_ids == set(range(1, len(objects) + 1))
        described_colours = [colour for _, colour, _, _, _ in described]
        assert len(set(described_colours)) == len(described_colours)

        for size, colour, shape, region, occluders in described:
            class_id = SHAPE_CLASSES.index(shape) + 1
            # Judged from the class mask and the pixels alone: the named
            # region holds pixels of that class in that colour.
            rows, cols = region_slices(region, image_size)
            in_region = class_mask[rows, cols] == class_id
            colour_distance = np.abs(
                image[rows, cols] - np.asarray(shapes.COLOURS[colour])
            ).max(axis=-1)
            assert (in_region & (colour_distance <= 20)).any(), (index, region)

            # And with the metadata: the region holds most of its visible part.
            obj = next(o for o in objects if o["colour"] == colour)
            k = objects.index(obj)
            assert (obj["shape"], obj["size"], obj["region"]) == (
                shape,
                size,
                region,
            )
            own = instance_mask == k + 1
            assert (class_mask[own] == class_id).all()
            cells = shapes.region_cell_counts(own)
            assert (
                cells.reshape(-1)[shapes.REGIONS.index(region)] == cells.max()
            )
            assert obj["visible_fraction"] >= dataset.min_visible_fraction
            np.testing.assert_array_equal(
                example["depth"][own], np.float32(obj["depth"])
            )

            # "Partly behind X, Y": exactly X and Y are seen where the whole
            # shape would be, and they are nearer.
            whole = shapes.draw_shape_mask(
                shape, *obj["center"], obj["extent"], image_size
            )
            assert (whole | own).sum() == whole.sum()
            seen_over = set(np.unique(instance_mask[whole & ~own]).tolist())
            named = set()
            for occluder_colour, occluder_shape in occluders:
                other = next(
                    o for o in objects if o["colour"] == occluder_colour
                )
                assert other["shape"] == occluder_shape
                assert other["depth"] < obj["depth"]
                named.add(objects.index(other) + 1)
            assert named == seen_over, (index, example["synthetic_caption"])

        assert (example["depth"][class_mask == 0] == 1.0).all()
        visible = [
            np.count_nonzero(instance_mask == k + 1)
            for k in range(len(objects))
        ]
        main = max(range(len(objects)), key=lambda k: (visible[k], k))
        assert example["label"] == objects[main]["class_id"] - 1


def test_examples_are_pure_functions_of_split_seed_and_index():
    first = ShapesDataset("train", 50, 64, seed=3)
    again = ShapesDataset("train", 50, 64, seed=3)
    for index in (0, 7, 49):
        a, b = first[index], again[index]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["class_mask"], b["class_mask"])
        assert a["web_caption"] == b["web_caption"]
        assert a["synthetic_caption"] == b["synthetic_caption"]
    # Reading out of order does not change an example.
    assert (
        first[7]["synthetic_caption"]
        == ShapesDataset("train", 50, 64, seed=3)[7]["synthetic_caption"]
    )
    for other in (
        ShapesDataset("validation", 50, 64, seed=3),
        ShapesDataset("test", 50, 64, seed=3),
        ShapesDataset("train", 50, 64, seed=4),
    ):
        assert not np.array_equal(first[0]["image"], other[0]["image"])
    assert not np.array_equal(first[0]["image"], first[1]["image"])
    with pytest.raises(IndexError):
        first[50]
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("dev")


def test_spatial_words_matter():
    """Scenes with the same objects in other places get other captions."""
    dataset = ShapesDataset("train", 400, 56, seed=0)
    by_content = {}
    regions = set()
    for index in range(len(dataset)):
        example = dataset[index]
        content = tuple(
            sorted(
                (o["size"], o["colour"], o["shape"]) for o in example["objects"]
            )
        )
        by_content.setdefault(content, set()).add(example["synthetic_caption"])
        regions.update(o["region"] for o in example["objects"])
    assert regions == set(shapes.REGIONS)
    assert any(len(captions) > 1 for captions in by_content.values())


def test_web_captions_are_short_and_noisy():
    dataset = ShapesDataset("train", 300, 56, seed=0)
    generic = wrong = 0
    for index in range(len(dataset)):
        example = dataset[index]
        caption = example["web_caption"]
        assert 0 < len(caption.split()) <= 10
        if caption in shapes.GENERIC_CAPTIONS:
            generic += 1
            continue
        named = [w for w in caption.split() if w in SHAPE_CLASSES]
        if not any(o["shape"] == named[0] for o in example["objects"]):
            wrong += 1
    assert 20 <= generic <= 80 and wrong >= 5


def test_shapes_feed_the_pipeline_with_encoded_or_raw_images(tokenizer):
    dataset = ShapesDataset("train", 8, 42, seed=2)
    raw = dataset.image_text_source()
    encoded = dataset.image_text_source(encode=True)
    decoded, kinds = decoding.decode_image(encoded[3]["image"])
    np.testing.assert_array_equal(decoded, raw[3]["image"])
    assert kinds == () and raw[3]["caption"] == dataset[3]["web_caption"]
    config = PipelineConfig(
        batch_size=4,
        global_image_size=42,
        local_crop_count=2,
        local_image_size=14,
    )
    batches = []
    for source in (raw, encoded):
        with PretrainingPipeline(source, config, tokenizer) as pipeline:
            batches.append(next(pipeline))
    np.testing.assert_array_equal(
        batches[0]["global_images"], batches[1]["global_images"]
    )


def test_zero_shot_names_and_prompts():
    prompts = shapes.zero_shot_prompts("star")
    assert (
        len(prompts) == len(shapes.ZERO_SHOT_TEMPLATES) and "a star." in prompts
    )
    assert ShapesDataset.class_names == SHAPE_CLASSES


def test_skimage_photos_go_through_the_pipeline(tokenizer):
    source = SkimagePhotosSource()
    assert len(source) >= 12 and "astronaut.png" in source.names
    config = PipelineConfig(
        batch_size=4,
        global_image_size=56,
        local_crop_count=0,
        training=False,
        num_epochs=1,
        drop_remainder=False,
    )
    with PretrainingPipeline(source, config, tokenizer) as pipeline:
        kept = sum(len(batch["has_web"]) for batch in pipeline)
    assert kept == len(source)
    assert pipeline.stats.records_skipped == 0
    assert pipeline.stats.counts[stats.CONVERTED_GRAYSCALE] >= 3
    assert pipeline.stats.counts[stats.CONVERTED_ALPHA] >= 1


def test_synthetic_captions_at_three_granularities():
    dataset = ShapesDataset("validation", 40, 56, seed=2)
    for index in range(len(dataset)):
        example = dataset[index]
        phrase, sentence, full = example["synthetic_captions"]
        assert full == example["synthetic_caption"]
        assert len(phrase) < len(sentence) <= len(full)
        order = sorted(example["objects"], key=lambda o: -o["visible_pixels"])
        # The phrase names every object by colour and shape, most visible
        # first; the sentence adds its size and region.
        named = [f"a {o['colour']} {o['shape']}" for o in order]
        assert phrase.replace(" and ", ", ").split(", ") == named
        positions = [sentence.index(f"{o['size']} {o['colour']} {o['shape']} in the {o['region']}")
                     for o in order]
        assert positions == sorted(positions)
        assert sentence.endswith(".") and "behind" not in sentence


def test_colour_mask_marks_each_visible_object_with_its_colour():
    dataset = ShapesDataset("test", 30, 56, seed=0)
    for index in range(len(dataset)):
        example = dataset[index]
        colour_mask = example["colour_mask"]
        np.testing.assert_array_equal(colour_mask > 0, example["class_mask"] > 0)
        for k, obj in enumerate(example["objects"]):
            visible = example["instance_mask"] == k + 1
            assert np.all(colour_mask[visible] == shapes.COLOUR_NAMES.index(obj["colour"]) + 1)


def test_object_scale_makes_shapes_bigger_and_keeps_scenes_otherwise():
    plain = ShapesDataset("train", 30, 84, seed=1)
    same = ShapesDataset("train", 30, 84, seed=1, object_scale=1.0)
    big = ShapesDataset("train", 30, 84, seed=1, object_scale=1.5)
    np.testing.assert_array_equal(plain[3]["image"], same[3]["image"])
    extents = [(o["size"], o["extent"]) for i in range(30) for o in big[i]["objects"]]
    for size, extent in extents:
        low, high = shapes.SIZE_FRACTIONS[size]
        assert 1.5 * low * 84 <= extent <= 1.5 * high * 84
    foreground = lambda d: np.mean([(d[i]["class_mask"] > 0).mean() for i in range(30)])
    assert foreground(big) > 1.3 * foreground(plain)
    with pytest.raises(ValueError, match="object_scale"):
        ShapesDataset("train", 4, 56, object_scale=2.5)
