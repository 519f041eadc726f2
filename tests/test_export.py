"""Exporting the towers: each format written by `keras-tips export` on its
backend (a subprocess), reloaded with its own runtime (TensorFlow's
SavedModel loader, the LiteRT interpreter, onnxruntime) and compared with
the Keras model; clear errors for what a format or backend cannot do."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_tips.cli.main import build_parser
from keras_tips.export import EXPORT_FORMATS
from keras_tips.export import export_tower
from keras_tips.export import tower_model

TEXTS = ["a photo of two cows", "A red circle"]


def _export(preset, tower, export_format, output, *options):
    backend = EXPORT_FORMATS[export_format].backend
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "keras_tips.cli", "export", "--preset", preset,
         "--tower", tower, "--format", export_format, "--output", str(output), *options],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"as {export_format} to" in result.stdout
    return str(output)


def _expected(tiny_model, tower, inputs):
    model = tower_model(
        tiny_model.backbone, tower,
        sequence_length=tiny_model.preprocessor.tokenizer.sequence_length,
    )
    return {k: keras.ops.convert_to_numpy(v) for k, v in model(inputs).items()}


def _text_inputs(tiny_model):
    token_ids, padding_mask = tiny_model.preprocessor.tokenizer.tokenize_numpy(TEXTS)
    return {"token_ids": token_ids.astype("int32"), "padding_mask": padding_mask.astype(bool)}


def _serve_saved_model(path, inputs):
    import tensorflow as tf

    served = tf.saved_model.load(path)  # Held: its variables live as long as it.
    outputs = served.serve(inputs)
    return {key: value.numpy() for key, value in outputs.items()}


def _serve_litert(path, inputs):
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner()
    return runner(**(inputs if isinstance(inputs, dict) else {"images": inputs}))


def _serve_onnx(path, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(path)
    feed = inputs if isinstance(inputs, dict) else {"images": inputs}
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, feed)))


def _assert_close(served, expected):
    assert sorted(served) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(served[key], value, rtol=0, atol=1e-5, err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize(
    "export_format, output_name, serve, options, image_sizes",
    [
        # Any batch and image size: two sizes through one SavedModel.
        ("saved_model", "saved_model", _serve_saved_model, (), ((2, 56, 70), (1, 42, 28))),
        # A fixed image size (the preset's), any batch.
        ("litert", "tower.tflite", _serve_litert, (), ((2, 56, 56), (3, 56, 56))),
        # A fixed batch and image size.
        ("onnx", "tower.onnx", _serve_onnx, ("--batch-size", "2", "--image-size", "42x70"),
         ((2, 42, 70),)),
    ],
)
def test_each_format_reloads_and_matches_keras(
    tiny_model, reference_presets, tmp_path, export_format, output_name, serve, options,
    image_sizes,
):
    preset = reference_presets["tips_tiny"]
    rng = np.random.default_rng(0)
    path = _export(preset, "vision", export_format, tmp_path / f"vision_{output_name}", *options)
    for batch, height, width in image_sizes:
        images = rng.random((batch, height, width, 3)).astype("float32")
        _assert_close(serve(path, images), _expected(tiny_model, "vision", images))
    text_options = [o for o in options if o.startswith("--batch") or o == "2"]
    path = _export(preset, "text", export_format, tmp_path / f"text_{output_name}", *text_options)
    inputs = _text_inputs(tiny_model)
    _assert_close(serve(path, inputs), _expected(tiny_model, "text", inputs))


def test_export_help_names_each_format_with_its_backend(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # unwrapped
    for name, entry in EXPORT_FORMATS.items():
        assert f"{name} (KERAS_BACKEND={entry.backend})" in text


def test_bad_requests_are_refused_before_exporting(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="Unknown export format 'tflite'"):
        export_tower(tiny_model, "vision", "tflite", tmp_path / "x")
    with pytest.raises(ValueError, match="Unknown tower 'audio'"):
        export_tower(tiny_model, "audio", "onnx", tmp_path / "x.onnx")
    with pytest.raises(ValueError, match=r"name it \*\.onnx"):
        export_tower(tiny_model, "vision", "onnx", tmp_path / "vision.tflite")
    with pytest.raises(ValueError, match="not a positive multiple of the patch size 14.*42"):
        export_tower(tiny_model, "vision", "litert", tmp_path / "v.tflite", image_size=40)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        export_tower(tiny_model, "text", "onnx", tmp_path / "t.onnx", batch_size=0)
    (tmp_path / "taken.onnx").write_bytes(b"")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_tower(tiny_model, "text", "onnx", tmp_path / "taken.onnx")


@pytest.mark.multibackend
def test_a_format_of_another_backend_names_the_backend_to_use(tiny_model, tmp_path):
    running = keras.backend.backend()
    for name, entry in EXPORT_FORMATS.items():
        if entry.backend == running:
            continue
        output = tmp_path / f"tower{entry.suffix}"
        with pytest.raises(ValueError, match=f"KERAS_BACKEND={entry.backend}"):
            export_tower(tiny_model, "text", name, output)
        assert not output.exists()
