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
    "convert", "convert-dpt", "pretrain", "ablation", "evaluate", "embed", "show",
    "predict", "demo",
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
    """Two RGB images of other sizes than the preset's, and a file that is not
    an image."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("b.png", (40, 70)), ("a.JPG", (90, 60))):
        pixels = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    return folder


def test_embed_and_show_read_a_folder_of_images(tmp_path, reference_presets, capsys):
    from PIL import Image

    from keras_tips import TIPSModel
    from keras_tips.cli.main import main

    preset = reference_presets["tips_tiny"]
    folder = _image_folder(tmp_path / "images")
    output = str(tmp_path / "emb")
    assert main(["embed", "--preset", preset, "--images", str(folder), "--output", output]) == 0
    with open(output + "_index.json", encoding="utf-8") as f:
        assert json.load(f) == ["a.JPG", "b.png"]
    # The official preprocessing: RGB squashed to the preset's size,
    # bilinear with antialiasing (as torch computes it), / 255.
    import torch

    model = TIPSModel.from_preset(preset)
    size = model.preprocessor.image_converter.image_size
    expected = []
    for name in ("a.JPG", "b.png"):
        with Image.open(folder / name) as image:
            pixels = torch.tensor(np.asarray(image.convert("RGB")), dtype=torch.float32)
        resized = torch.nn.functional.interpolate(
            pixels.permute(2, 0, 1)[None] / 255, size=size, mode="bilinear", antialias=True
        )
        expected.append(resized[0].permute(1, 2, 0).numpy())
    features = model.encode_images(np.stack(expected))
    for key in ("cls_1", "cls_2", "patches"):
        np.testing.assert_allclose(np.load(f"{output}_{key}.npy"), features[key], atol=1e-4)

    pictures = tmp_path / "pictures"
    args = ["show", "--preset", preset, "--images", str(folder), "--output", str(pictures)]
    assert main(args) == 0
    assert sorted(p.name for p in pictures.iterdir()) == ["pca.png", "similarity.png"]
    assert main(["embed", "--preset", preset, "--images", str(tmp_path), "--output", output]) == 2
    assert "No images (.png, .jpg" in capsys.readouterr().err
