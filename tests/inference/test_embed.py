"""Embedding files at scale: batches, memory-mapped output, skipped files."""

import json
import os
import tracemalloc

import numpy as np
import pytest

from keras_tips.inference.classify import classify_image_files
from keras_tips.inference.classify import zero_shot_classifier
from keras_tips.inference.embed import embed_image_files
from keras_tips.inference.embed import embed_texts
from keras_tips.inference.embed import encode_image_files
from keras_tips.inference.image_batches import ImageFileBatches
from tests.evaluation.colour_model import ColourModel
from tests.evaluation.colour_model import save_image
from tests.evaluation.colour_model import solid_image


def _folder(path, count, broken=()):
    """`count` images of distinct colours (their colours returned) and
    undecodable files at the positions `broken`."""
    path.mkdir()
    rng = np.random.default_rng(0)
    paths, colours = [], []
    for index in range(count):
        if index in broken:
            name = f"{index:03d}.jpg"
            (path / name).write_text("not an image", encoding="utf-8")
            colours.append(None)
        else:
            name = f"{index:03d}.png"
            colour = rng.integers(0, 256, 3) / 255.0
            save_image(path / name, solid_image(colour))
            colours.append(colour)
        paths.append(str(path / name))
    return paths, colours


def test_embeds_batch_by_batch_and_leaves_out_unreadable_files(tmp_path):
    paths, colours = _folder(tmp_path / "images", 7, broken=(2,))
    names = [os.path.basename(p) for p in paths]
    model = ColourModel()
    prefix = str(tmp_path / "out" / "emb")
    summary = embed_image_files(
        model, paths, prefix, outputs="cls_1,patches", batch_size=3, names=names
    )
    assert model.largest_batch == 3 and model.images_seen == 6
    assert summary["rows"] == 6
    readable = [i for i, c in enumerate(colours) if c is not None]
    with open(prefix + "_index.json", encoding="utf-8") as f:
        assert json.load(f) == [names[i] for i in readable]
    with open(prefix + "_skipped.json", encoding="utf-8") as f:
        skipped = json.load(f)
    assert [s["name"] for s in skipped] == ["002.jpg"] and "002.jpg" in skipped[0]["reason"]
    cls_1 = np.load(prefix + "_cls_1.npy")
    np.testing.assert_allclose(cls_1, [colours[i] for i in readable], atol=1e-5)
    patches = np.load(prefix + "_patches.npy", mmap_mode="r")
    assert patches.shape == (6, 4, 3)
    np.testing.assert_allclose(patches[:, 0], cls_1, atol=1e-5)
    # The arrays were cut to the rows written: nothing after the last row.
    with open(prefix + "_cls_1.npy", "rb") as f:
        np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        assert os.path.getsize(prefix + "_cls_1.npy") == f.tell() + 6 * 3 * 4
    assert not os.path.exists(prefix + "_cls_2.npy")
    assert sorted(os.listdir(tmp_path / "out")) == [
        "emb_cls_1.npy", "emb_index.json", "emb_patches.npy", "emb_skipped.json"
    ]


class WideModel(ColourModel):
    """Patch features of 64 KB per image, so that keeping them in memory
    would show."""

    def encode_images(self, images, batch_size=32, return_value_patches=False):
        outputs = super().encode_images(images, batch_size, return_value_patches)
        outputs["patches"] = np.repeat(outputs["patches"], 1366, axis=-1)  # 4 x 4098
        return outputs


def _peak_memory(tmp_path, count):
    paths, _ = _folder(tmp_path / f"images_{count}", count)
    model = WideModel()
    tracemalloc.start()
    try:
        embed_image_files(model, paths, str(tmp_path / f"emb_{count}"), batch_size=5)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_constant_in_the_number_of_images(tmp_path):
    few = _peak_memory(tmp_path, 10)
    many = _peak_memory(tmp_path, 100)
    per_image = 4 * 4098 * 4
    # Holding the 90 extra images' patches would add 5.9 MB; one batch is
    # 0.3 MB. (The names and index grow by a few kB.)
    assert many - few < 10 * per_image, (few, many)
    patches = np.load(str(tmp_path / "emb_100_patches.npy"), mmap_mode="r")
    assert patches.shape == (100, 4, 4098)


def test_no_readable_image_is_an_error_and_leaves_no_file(tmp_path):
    paths, _ = _folder(tmp_path / "images", 2, broken=(0, 1))
    with pytest.raises(ValueError, match="None of the 2 image files"):
        embed_image_files(ColourModel(), paths, str(tmp_path / "out" / "emb"))
    assert os.listdir(tmp_path / "out") == []


def test_bad_outputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cls_3.*cls_1, cls_2, patches, value_patches"):
        embed_image_files(ColourModel(), ["x.png"], str(tmp_path / "e"), outputs="cls_1,cls_3")


def test_texts_stream_into_one_array(tmp_path):
    model = ColourModel()
    texts = ["a red car", "green", "blue and red", "nothing"]
    assert embed_texts(model, texts, str(tmp_path / "texts.npy"), batch_size=3) == 4
    np.testing.assert_array_equal(np.load(tmp_path / "texts.npy"), model.encode_texts(texts))


def test_in_memory_features_for_evaluations(tmp_path):
    paths, colours = _folder(tmp_path / "images", 4, broken=(1,))
    features, kept, skipped = encode_image_files(ColourModel(), paths, batch_size=2)
    assert kept.tolist() == [0, 2, 3] and [i for i, _ in skipped] == [1]
    np.testing.assert_allclose(features["cls_2"], [colours[i] for i in (0, 2, 3)], atol=1e-5)


def test_classifies_image_files_into_the_right_classes(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    truth = ["green", "red", "blue", "red"]
    for index, colour in enumerate(truth):
        save_image(folder / f"{index}.png", solid_image({"red": (0.9, 0.1, 0.1),
                   "green": (0.1, 0.8, 0.2), "blue": (0.2, 0.1, 0.7)}[colour]))
    model = ColourModel()
    classes = ["red", "green", "blue"]
    classifier = zero_shot_classifier(model, classes, ["a {} thing.", "a photo of a {}."])
    batches = ImageFileBatches([str(folder / f"{i}.png") for i in range(4)], (28, 28), 3)
    results = list(classify_image_files(model, batches, classifier))
    indices = np.concatenate([i for i, _ in results])
    probabilities = np.concatenate([p for _, p in results])
    assert indices.tolist() == [0, 1, 2, 3]
    assert [classes[i] for i in probabilities.argmax(axis=1)] == truth
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
