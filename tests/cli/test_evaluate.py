"""`keras-tips evaluate` on each kind of data, with a real (tiny) preset."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_tips.cli.main import main


def _picture(path, seed, size=(30, 40)):
    pixels = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _evaluate(capsys, *args):
    code = main(["evaluate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_image_folder_with_a_support_folder(tmp_path, reference_presets, capsys):
    for split in ("val", "train"):
        for label, folder in enumerate(("cat", "two_cows")):
            (tmp_path / split / folder).mkdir(parents=True)
            for index in range(2):
                _picture(tmp_path / split / folder / f"{index}.png", 10 * label + index)
    output = tmp_path / "results.json"
    code, out, _ = _evaluate(
        capsys, "--preset", reference_presets["tips_tiny"], "--image-folder",
        str(tmp_path / "val"), "--support", str(tmp_path / "train"), "--templates",
        "imagenet_7", "--output", str(output),
    )
    assert code == 0
    assert "zero_shot/cls_1/top1" in out and "knn/cls_2/top5" in out
    results = json.loads(output.read_text(encoding="utf-8"))
    assert results["counts"]["images"] == 4 and results["counts"]["support_images"] == 4
    assert results["counts"]["templates"] == 7
    for value in results["metrics"].values():
        assert 0.0 <= value <= 1.0


def test_captions_and_segmentation(tmp_path, reference_presets, capsys):
    preset = reference_presets["tips_tiny"]
    (tmp_path / "pictures").mkdir()
    lines = []
    for index in range(3):
        _picture(tmp_path / "pictures" / f"{index}.jpg", index)
        lines.append({"image": f"pictures/{index}.jpg",
                      "caption": [f"picture {index}", "a photo"]})
    (tmp_path / "index.jsonl").write_text(
        "\n".join(json.dumps(line) for line in lines), encoding="utf-8"
    )
    output = tmp_path / "retrieval.json"
    code, out, _ = _evaluate(capsys, "--preset", preset, "--captions",
                             str(tmp_path / "index.jsonl"), "--output", str(output))
    assert code == 0, out
    results = json.loads(output.read_text(encoding="utf-8"))
    assert results["counts"] == {"images": 3, "skipped": 0, "captions": 6}
    assert "retrieval/cls_1/text_to_image/recall@10" in results["metrics"]

    ade = tmp_path / "ade"
    (ade / "images").mkdir(parents=True)
    (ade / "annotations").mkdir()
    for index in range(2):
        _picture(ade / "images" / f"{index}.jpg", index)
        labels = np.random.default_rng(index).integers(0, 4, (30, 40), dtype=np.uint8)
        Image.fromarray(labels).save(ade / "annotations" / f"{index}.png")
    names = tmp_path / "classes.txt"
    names.write_text("sky\ntree\nroad\n", encoding="utf-8")
    output = tmp_path / "segmentation.json"
    code, out, _ = _evaluate(
        capsys, "--preset", preset, "--segmentation", str(ade), "--class-names",
        str(names), "--templates", "imagenet_7", "--output", str(output),
    )
    assert code == 0, out
    results = json.loads(output.read_text(encoding="utf-8"))
    assert 0.0 <= results["metrics"]["zero_shot_segmentation/miou"] <= 1.0
    assert sorted(results["per_class_iou"]) == ["road", "sky", "tree"]


def test_options_of_another_kind_of_data_are_refused(tmp_path, reference_presets, capsys):
    preset = reference_presets["tips_tiny"]
    code, _, err = _evaluate(capsys, "--preset", preset, "--captions", "x.jsonl",
                             "--support", str(tmp_path))
    assert code == 2 and "--support applies to --image-folder, not to --captions" in err
    code, _, err = _evaluate(capsys, "--preset", preset, "--segmentation", str(tmp_path))
    assert code == 2 and "--segmentation needs --class-names" in err
    with pytest.raises(SystemExit):  # argparse: one kind of data is required
        main(["evaluate", "--preset", preset])
    assert "one of the arguments --shapes --image-folder" in capsys.readouterr().err


@pytest.mark.slow
def test_shapes_benchmark_by_its_name(tmp_path, reference_presets, capsys):
    output = tmp_path / "shapes.json"
    code, out, _ = _evaluate(
        capsys, "--preset", reference_presets["tips_tiny"], "--shapes",
        "--num-train", "12", "--num-test", "8", "--probe-epochs", "1",
        "--output", str(output),
    )
    assert code == 0
    results = json.loads(output.read_text(encoding="utf-8"))
    assert "zero_shot/cls_1/top1" in results and "segmentation_probe/miou" in results
