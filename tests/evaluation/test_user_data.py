"""Evaluations on the user's data, each on a small generated replica of its
layout, scored by a model whose right answers are known (colours)."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_tips.evaluation.caption_retrieval import read_captioned_images
from keras_tips.evaluation.caption_retrieval import evaluate_caption_retrieval
from keras_tips.evaluation.image_folder import evaluate_image_folder
from keras_tips.evaluation.prompts import load_templates
from keras_tips.evaluation.prompts import read_class_names
from keras_tips.evaluation.segmentation_folder import evaluate_segmentation_folder
from keras_tips.evaluation.segmentation_folder import reduce_zero_label
from tests.evaluation.colour_model import ColourModel
from tests.evaluation.colour_model import save_image
from tests.evaluation.colour_model import solid_image

RED, GREEN, BLUE = (0.9, 0.1, 0.1), (0.1, 0.8, 0.2), (0.2, 0.1, 0.7)
TEMPLATES = ["a {} thing.", "a photo of a {}."]


def _class_folders(root, images):
    """`images`: class folder -> list of colours of its pictures."""
    for folder, colours in images.items():
        (root / folder).mkdir(parents=True)
        for index, colour in enumerate(colours):
            save_image(root / folder / f"{index}.png", solid_image(colour))


def test_class_folders_zero_shot_and_knn(tmp_path):
    # One green picture filed under red: 6 of 7 pictures are right.
    _class_folders(tmp_path / "val", {
        "red": [RED, RED, GREEN], "green": [GREEN, GREEN], "blue": [BLUE, BLUE],
    })
    (tmp_path / "val" / "blue" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    _class_folders(tmp_path / "train", {
        "red": [RED] * 3, "green": [GREEN] * 3, "blue": [BLUE] * 3,
    })
    results = evaluate_image_folder(
        ColourModel(), str(tmp_path / "val"), support_dir=str(tmp_path / "train"),
        templates=TEMPLATES, batch_size=4,
    )
    metrics = results["metrics"]
    for token in ("cls_1", "cls_2"):
        assert metrics[f"zero_shot/{token}/top1"] == pytest.approx(6 / 7)
        assert metrics[f"zero_shot/{token}/top5"] == 1.0  # top-5 of 3 classes
        assert metrics[f"knn/{token}/top1"] == pytest.approx(6 / 7)
    assert results["counts"] == {
        "images": 7, "skipped": 1, "classes": 3, "templates": 2,
        "support_images": 9, "support_skipped": 0,
    }
    assert "broken.jpg" in results["skipped"][0]


def test_class_folders_take_class_names_and_refuse_mismatches(tmp_path):
    # Folders named by WordNet ids need names; the names, in sorted folder
    # order, are what the prompts say.
    _class_folders(tmp_path / "val", {
        "n00000003": [BLUE], "n00000001": [RED], "n00000002": [GREEN],
    })
    model = ColourModel()
    with pytest.raises(ValueError, match="WordNet ids"):
        evaluate_image_folder(model, str(tmp_path / "val"), templates=TEMPLATES)
    results = evaluate_image_folder(
        model, str(tmp_path / "val"), class_names=["red", "green", "blue"],
        templates=TEMPLATES,
    )
    assert results["metrics"]["zero_shot/cls_1/top1"] == 1.0
    # Swapped names: every picture is now wrong.
    swapped = evaluate_image_folder(
        model, str(tmp_path / "val"), class_names=["green", "blue", "red"],
        templates=TEMPLATES,
    )
    assert swapped["metrics"]["zero_shot/cls_1/top1"] == 0.0
    with pytest.raises(ValueError, match="2 class names for 3 class folders"):
        evaluate_image_folder(model, str(tmp_path / "val"), class_names=["a", "b"])
    _class_folders(tmp_path / "train", {"n00000001": [RED], "n00000002": [GREEN]})
    with pytest.raises(ValueError, match="missing \\['n00000003'\\]"):
        evaluate_image_folder(
            model, str(tmp_path / "val"), support_dir=str(tmp_path / "train"),
            class_names=["red", "green", "blue"],
        )


COLOURS = [(0.9, 0.1, 0.1), (0.1, 0.9, 0.1), (0.1, 0.1, 0.9), (0.5, 0.5, 0.1)]


def _caption(colour):
    return "colour " + " ".join(f"{c:.2f}" for c in colour)


def _captioned_pictures(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for index, colour in enumerate(COLOURS):
        save_image(folder / f"{index}.png", solid_image(colour))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n broken")


def test_karpathy_json_retrieval_both_ways(tmp_path):
    _captioned_pictures(tmp_path / "images" / "val2014")
    images = []
    for index, colour in enumerate(COLOURS):
        # The last picture's captions describe a colour near the first one's:
        # its two captions find the first picture first (text -> image rank
        # 1), while it still prefers them to the other captions.
        said = (0.85, 0.15, 0.10) if index == 3 else colour
        images.append({
            "filepath": "val2014", "filename": f"{index}.png", "split": "test",
            "sentences": [{"raw": _caption(said)}, {"tokens": _caption(said).split()}],
        })
    images.append({"filepath": "val2014", "filename": "broken.png", "split": "test",
                   "sentences": [{"raw": "colour 0.30 0.30 0.30"}]})
    images.append({"filename": "not_there.png", "split": "train",
                   "sentences": [{"raw": "colour 0.90 0.10 0.10"}]})
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}), encoding="utf-8")
    data = read_captioned_images(str(path), images_root=str(tmp_path / "images"))
    assert len(data.paths) == 5 and len(data.captions["caption"]) == 9
    results = evaluate_caption_retrieval(ColourModel(), data, batch_size=2, ks=(1, 5))
    metrics = results["metrics"]
    for token in ("cls_1", "cls_2"):
        assert metrics[f"retrieval/{token}/text_to_image/recall@1"] == 0.75
        assert metrics[f"retrieval/{token}/text_to_image/recall@5"] == 1.0
        assert metrics[f"retrieval/{token}/image_to_text/recall@1"] == 1.0
    assert results["counts"] == {"images": 4, "skipped": 1, "captions": 8}
    with pytest.raises(ValueError, match="no images of split 'val'.*'test', 'train'"):
        read_captioned_images(str(path), split="val")


def test_jsonl_index_retrieval_with_both_caption_kinds(tmp_path):
    _captioned_pictures(tmp_path)
    lines = []
    for index, colour in enumerate(COLOURS):
        lines.append({"image": f"{index}.png", "caption": [_caption(colour)]})
        # A second line adds a synthetic caption; the last picture's names
        # the first picture's colour word, so it is found second.
        word = ["red", "green", "blue", "red"][index]
        lines.append({"image": f"{index}.png", "synthetic_caption": f"a {word} square"})
    path = tmp_path / "index.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    data = read_captioned_images(str(path))
    assert len(data.paths) == 4
    results = evaluate_caption_retrieval(ColourModel(), data, ks=(1,))
    metrics = results["metrics"]
    assert metrics["retrieval/cls_1/text_to_image/recall@1"] == 1.0
    assert metrics["retrieval/cls_1/image_to_text/recall@1"] == 1.0
    # "a red square" x 2 (pictures 0 and 3) both score picture 0 highest.
    assert metrics["retrieval_synthetic/cls_1/text_to_image/recall@1"] == 0.75
    assert results["counts"] == {
        "images": 4, "skipped": 0, "captions": 4, "synthetic_captions": 4
    }
    path.write_text('{"image": "0.png", "caption": 3}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: a caption must be a string"):
        read_captioned_images(str(path))


def _halves(left, right, size=56):
    picture = np.zeros((size, size, 3), np.float32)
    picture[:, : size // 2] = left
    picture[:, size // 2 :] = right
    return picture


def _label_map(path, left, right, size=56):
    labels = np.zeros((size, size), np.uint8)
    labels[:, : size // 2] = left
    labels[:, size // 2 :] = right
    Image.fromarray(labels).save(path)


def test_ade20k_style_folder_zero_shot_segmentation(tmp_path):
    images = tmp_path / "ade" / "images" / "validation"
    annotations = tmp_path / "ade" / "annotations" / "validation"
    images.mkdir(parents=True)
    annotations.mkdir(parents=True)
    # a: red | green, labelled so. b: all blue, its right half unlabelled
    # (0, ignored). c: red | green, but labelled all red: half of it wrong.
    save_image(images / "a.png", _halves(RED, GREEN))
    _label_map(annotations / "a.png", 1, 2)
    save_image(images / "b.jpg", _halves(BLUE, BLUE))
    _label_map(annotations / "b.png", 3, 0)
    save_image(images / "c.png", _halves(RED, GREEN))
    _label_map(annotations / "c.png", 1, 1)
    (images / "d.png").write_bytes(b"broken")
    _label_map(annotations / "d.png", 1, 1)
    names = tmp_path / "classes.txt"
    names.write_text("red\ngreen\nblue\n", encoding="utf-8")
    results = evaluate_segmentation_folder(
        ColourModel(), str(tmp_path / "ade"), read_class_names(str(names), expected=3),
        split="validation", templates=TEMPLATES, batch_size=2,
    )
    # Scored pixels: a 3136, b 1568, c 3136; wrong: the right half of c.
    metrics = results["metrics"]
    assert metrics["zero_shot_segmentation/pixel_accuracy"] == pytest.approx(6272 / 7840)
    # red: 3136 / (4704 + 3136 - 3136); green: 1568 / 3136; blue: 1.
    assert results["per_class_iou"] == pytest.approx(
        {"red": 2 / 3, "green": 0.5, "blue": 1.0}
    )
    assert metrics["zero_shot_segmentation/miou"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert results["counts"] == {"images": 3, "skipped": 1, "classes": 3}
    # A label id beyond the class names is refused, naming the file.
    _label_map(annotations / "a.png", 1, 4)
    with pytest.raises(ValueError, match="a.png.*\\[0, 3\\]"):
        evaluate_segmentation_folder(
            ColourModel(), str(tmp_path / "ade"), ["red", "green", "blue"],
            split="validation", templates=TEMPLATES,
        )
    (annotations / "c.png").unlink()
    with pytest.raises(ValueError, match="1 of 4 images have no label map.*c.png"):
        evaluate_segmentation_folder(
            ColourModel(), str(tmp_path / "ade"), ["red", "green", "blue"],
            split="validation",
        )


def test_reduce_zero_label_is_ade20k_s_convention():
    labels = np.array([[0, 1, 150]])
    np.testing.assert_array_equal(reduce_zero_label(labels, 150), [[-1, 0, 149]])
    with pytest.raises(ValueError, match="\\[0, 150\\]"):
        reduce_zero_label(np.array([151]), 150)


def test_shipped_prompt_ensembles(tmp_path):
    full, short = load_templates("imagenet_80"), load_templates("imagenet_7")
    assert len(full) == 80 and len(set(full)) == 80 and len(short) == 7
    assert set(short) <= set(full)
    assert full[0] == "a bad photo of a {}." and "itap of a {}." in short
    path = tmp_path / "templates.txt"
    path.write_text("# mine\n\na {} photo.\nno placeholder\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 4.*'no placeholder'"):
        load_templates(str(path))
