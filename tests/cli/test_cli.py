"""The keras-tips command line: complete help, clear errors, conversion."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_tips.cli.main import build_parser
from tests.conftest import reference_dir

VERBS = (
    "convert", "convert-dpt", "pretrain", "ablation", "evaluate", "embed", "classify",
    "show", "predict", "demo", "export",
)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_complete_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([verb, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"keras-tips {verb}" in text
    for action in build_parser()._subparsers._group_actions[0].choices[verb]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{verb} {action.option_strings} has no help"


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "keras_tips.cli", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )


def test_convert_then_embed(tmp_path):
    tiny = reference_dir("tips_tiny")
    result = _run(
        "convert", "--vision", f"{tiny}/vision.npz", "--text", f"{tiny}/text.npz",
        "--tokenizer", f"{tiny}/tokenizer.model", "--output", str(tmp_path / "preset"),
        "--image-size", "56", "--vision-num-heads", "4", "--text-num-heads", "4",
        "--max-sequence-length", "16",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "139,328 parameters" in result.stdout
    texts = tmp_path / "texts.txt"
    texts.write_text("a photo of a cat\ntwo cows\n", encoding="utf-8")
    result = _run("embed", "--preset", str(tmp_path / "preset"), "--texts", str(texts),
                  "--output", str(tmp_path / "emb"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.load(tmp_path / "emb.npy").shape == (2, 64)


def test_clear_error_and_exit_code(tmp_path):
    result = _run("convert", "--vision", str(tmp_path / "missing.npz"), "--text", "x",
                  "--tokenizer", "y", "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def _image_folder(folder):
    """Two RGB images of other sizes than the preset's, a file that is not
    an image, and a damaged image in a subfolder."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("b.png", (40, 70)), ("a.JPG", (90, 60))):
        pixels = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    (folder / "more").mkdir()
    Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(folder / "more" / "c.png")
    (folder / "more" / "damaged.jpg").write_bytes(b"\xff\xd8\xff not really")
    return folder


def _read_like_embed(folder, names, size):
    """The official preprocessing: RGB squashed to the preset's size,
    bilinear with antialiasing (as torch computes it), / 255."""
    import torch
    from PIL import Image

    expected = []
    for name in names:
        with Image.open(folder / name) as image:
            pixels = torch.tensor(np.asarray(image.convert("RGB")), dtype=torch.float32)
        resized = torch.nn.functional.interpolate(
            pixels.permute(2, 0, 1)[None] / 255, size=size, mode="bilinear", antialias=True
        )
        expected.append(resized[0].permute(1, 2, 0).numpy())
    return np.stack(expected)


def test_embed_and_show_read_a_folder_of_images(tmp_path, reference_presets, capsys):
    from keras_tips import TIPSModel
    from keras_tips.cli.main import main

    preset = reference_presets["tips_tiny"]
    folder = _image_folder(tmp_path / "images")
    output = str(tmp_path / "emb")
    assert main(["embed", "--preset", preset, "--images", str(folder), "--output", output]) == 0
    with open(output + "_index.json", encoding="utf-8") as f:
        assert json.load(f) == ["a.JPG", "b.png"]
    model = TIPSModel.from_preset(preset)
    size = model.preprocessor.image_converter.image_size
    features = model.encode_images(_read_like_embed(folder, ["a.JPG", "b.png"], size))
    for key in ("cls_1", "cls_2", "patches"):
        np.testing.assert_allclose(np.load(f"{output}_{key}.npy"), features[key], atol=1e-4)

    # Subfolders too, a damaged file skipped and listed, chosen outputs only.
    args = ["embed", "--preset", preset, "--images", str(folder), "--output", output + "_all",
            "--recursive", "--outputs", "cls_2,value_patches", "--batch-size", "2"]
    assert main(args) == 0
    assert "Embedded 3 of 4 images" in capsys.readouterr().out
    names = ["a.JPG", "b.png", "more/c.png"]
    with open(output + "_all_index.json", encoding="utf-8") as f:
        assert json.load(f) == names
    with open(output + "_all_skipped.json", encoding="utf-8") as f:
        assert [s["name"] for s in json.load(f)] == ["more/damaged.jpg"]
    features = model.encode_images(
        _read_like_embed(folder, names, size), return_value_patches=True
    )
    for key in ("cls_2", "value_patches"):
        np.testing.assert_allclose(np.load(f"{output}_all_{key}.npy"), features[key], atol=1e-4)
    assert not os.path.exists(output + "_all_cls_1.npy")

    pictures = tmp_path / "pictures"
    args = ["show", "--preset", preset, "--images", str(folder), "--output", str(pictures)]
    assert main(args) == 0
    assert sorted(p.name for p in pictures.iterdir()) == ["pca.png", "similarity.png"]
    assert main(["embed", "--preset", preset, "--images", str(tmp_path), "--output", output]) == 2
    assert "No images (.png, .jpg" in capsys.readouterr().err


def test_classify_prints_one_line_per_image(tmp_path, reference_presets, capsys):
    from keras_tips import TIPSModel
    from keras_tips.cli.main import main

    preset = reference_presets["tips_tiny"]
    folder = _image_folder(tmp_path / "images")
    args = ["classify", "--preset", preset, "--images", str(folder), "--recursive",
            "--classes", "cat,dog,two cows", "--templates", "imagenet_7", "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["image"] for r in records] == ["a.JPG", "b.png", "more/c.png"]
    assert "skipped 1" in captured.err and "damaged.jpg" in captured.err
    # The same probabilities as TIPSModel.classify with those templates.
    from keras_tips.evaluation.prompts import load_templates

    model = TIPSModel.from_preset(preset)
    images = _read_like_embed(folder, ["a.JPG", "b.png", "more/c.png"],
                              model.preprocessor.image_converter.image_size)
    expected = model.classify(images, ["cat", "dog", "two cows"], load_templates("imagenet_7"))
    for record, row in zip(records, expected):
        got = [record["probabilities"][c] for c in ("cat", "dog", "two cows")]
        np.testing.assert_allclose(got, row, atol=1e-5)
        assert record["label"] == ["cat", "dog", "two cows"][int(np.argmax(row))]
    assert main(["classify", "--preset", preset, "--images", str(folder), "--classes", "cat"]) == 2
    assert "at least two class names" in capsys.readouterr().err


def test_version(capsys):
    from keras_tips import __version__
    from keras_tips.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"keras-tips {__version__} (Keras ")


def test_pretrain_dtype_sets_the_recipe_dtype():
    from keras_tips.cli.pretrain import dtype_overrides

    assert dtype_overrides(["train.total_steps=5"], None) == ["train.total_steps=5"]
    assert dtype_overrides(["model.dtype='bfloat16'"], "bfloat16")[-1] == "model.dtype='bfloat16'"
    with pytest.raises(ValueError, match="--dtype mixed_bfloat16 contradicts --set model.dtype=float32"):
        dtype_overrides(["model.dtype=float32"], "mixed_bfloat16")
