"""The registry of released checkpoints: every config builds to the official
size, random weights in the official layout convert, and a registered name
is fetched, converted once and reused (tested offline with a local mirror)."""

import ast
import os

import numpy as np
import pytest

from keras_tips import TIPS_PRESETS
from keras_tips import TIPSModel
from keras_tips import TIPSTextEncoder
from keras_tips import TIPSVisionEncoder
from keras_tips.conversion.official_checkpoint import export_official_state
from keras_tips.conversion.official_checkpoint import text_weight_map
from keras_tips.conversion.official_checkpoint import vision_weight_map
from tests.conftest import reference_dir

SMALL = ["tips_oss_s14_highres_distilled", "tips_oss_b14_highres_distilled", "tips_v2_oss_b14"]
LARGE = [name for name in TIPS_PRESETS if name not in SMALL]


def test_registry_lists_all_released_checkpoints():
    assert set(TIPS_PRESETS) == {
        "tips_oss_s14_highres_distilled",
        "tips_oss_b14_highres_distilled",
        "tips_oss_l14_highres_distilled",
        "tips_oss_so400m14_highres_largetext_distilled",
        "tips_oss_g14_highres",
        "tips_oss_g14_lowres",
        "tips_v2_oss_b14",
        "tips_v2_oss_l14",
        "tips_v2_oss_so14",
        "tips_v2_oss_g14",
    }
    assert TIPS_PRESETS["tips_oss_g14_lowres"]["config"]["image_size"] == 224
    assert TIPS_PRESETS["tips_oss_g14_highres"]["config"]["image_size"] == 448
    text = TIPS_PRESETS["tips_oss_so400m14_highres_largetext_distilled"]["config"]["text"]
    assert text["num_layers"] == 27
    for entry in TIPS_PRESETS.values():
        assert entry["vision_url"].startswith("https://storage.googleapis.com/tips_data/")
        assert entry["vision_url"].endswith("_vision.npz")
        assert entry["text_url"].endswith("_text.npz")


def test_registry_is_data():
    """Downloading and converting live in `conversion/`: the registry
    imports nothing."""
    from keras_tips.models import tips_presets

    with open(tips_presets.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imports = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert imports == []


def _check_build(name):
    entry = TIPS_PRESETS[name]
    vision = TIPSVisionEncoder(**entry["config"]["vision"])
    vision.build()
    text = TIPSTextEncoder(**entry["config"]["text"])
    text.build()
    expected = entry.get("official_params")
    if expected:
        assert vision.count_params() == expected["vision"]
        assert text.count_params() == expected["text"]
    # keras-hub's preset metadata counts without building: the two towers
    # and the two temperatures.
    params = TIPSModel.presets[name]["metadata"]["params"]
    assert params == vision.count_params() + text.count_params() + 2
    grid = entry["config"]["vision"]["position_grid_size"]
    assert tuple(vision.position_embedding.shape) == (1, 1 + grid * grid, vision.hidden_dim)
    spec = vision.compute_output_spec(
        __import__("keras").KerasTensor((2, 28, 42, 3))
    )
    assert spec["patches"].shape == (2, 6, vision.hidden_dim)


@pytest.mark.parametrize("name", SMALL)
def test_small_configs_build_to_official_sizes(name):
    _check_build(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", LARGE)
def test_large_configs_build_to_official_sizes(name):
    import gc

    import keras

    _check_build(name)
    # Up to 1.5 B parameters per config: release them before the next one.
    keras.backend.clear_session()
    gc.collect()


def _write_random_official(name, directory, seed=0):
    """Writes random weights of a preset's shapes in the official layout."""
    import keras

    keras.utils.set_random_seed(seed)
    entry = TIPS_PRESETS[name]
    vision = TIPSVisionEncoder(**entry["config"]["vision"])
    vision.build()
    text = TIPSTextEncoder(**entry["config"]["text"])
    text.build()
    vision_state = export_official_state(vision_weight_map(vision))
    text_state = export_official_state(text_weight_map(text))
    text_state["temperature"] = np.array(0.02, "float32")
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, f"{name}_vision.npz"), **vision_state)
    np.savez(os.path.join(directory, f"{name}_text.npz"), **text_state)
    return vision, text


def _official_tokenizer_stand_in(directory):
    """A 32,000-piece SentencePiece model laid out like the official one."""
    import io

    import sentencepiece as spm

    path = os.path.join(directory, "tokenizer.model")
    if not os.path.exists(path):
        words = [f"w{i}x{j}" for i in range(400) for j in range(100)]
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(words),
            model_writer=buffer,
            vocab_size=32000,
            model_type="word",
            pad_id=0,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            minloglevel=2,
        )
        with open(path, "wb") as f:
            f.write(buffer.getvalue())
    return path


def test_random_s14_weights_convert_exactly(tmp_path):
    name = "tips_oss_s14_highres_distilled"
    vision, text = _write_random_official(name, tmp_path)
    tokenizer = _official_tokenizer_stand_in(str(tmp_path))
    from keras_tips import convert_official_checkpoint

    model = convert_official_checkpoint(
        tmp_path / "preset",
        vision_path=str(tmp_path / f"{name}_vision.npz"),
        text_path=str(tmp_path / f"{name}_text.npz"),
        tokenizer_path=tokenizer,
    )
    images = np.random.default_rng(0).random((1, 56, 70, 3), dtype="float32")
    expected = vision(images)
    outputs = model.encode_images(images)
    for key in ("cls_1", "cls_2", "patches"):
        np.testing.assert_allclose(outputs[key], np.asarray(
            __import__("keras").ops.convert_to_numpy(expected[key])), atol=1e-5)
    assert model.preprocessor.image_converter.image_size == (448, 448)
    assert abs(model.temperature_for("cls_2") - 0.02) < 1e-7


def test_registered_name_is_fetched_converted_once_and_reused(tmp_path, monkeypatch):
    """The online path, offline: a file:// mirror stands in for the bucket."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tiny = reference_dir("tips_tiny")
    name = "tips_test_tiny"
    for part in ("vision", "text"):
        data = open(os.path.join(tiny, f"{part}.npz"), "rb").read()
        (mirror / f"{name}_{part}.npz").write_bytes(data)
    (mirror / "tokenizer.model").write_bytes(open(os.path.join(tiny, "tokenizer.model"), "rb").read())
    entry = {
        "description": "test entry",
        "config": {
            "vision": {"num_heads": 4},
            "text": {"num_heads": 4, "max_sequence_length": 16},
            "image_size": 56,
        },
        "vision_url": f"https://example.invalid/{name}_vision.npz",
        "text_url": f"https://example.invalid/{name}_text.npz",
        "tokenizer_url": "https://example.invalid/tokenizer.model",
    }
    monkeypatch.setitem(TIPS_PRESETS, name, entry)
    monkeypatch.setenv("KERAS_TIPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_TIPS_CHECKPOINT_BASE_URL", mirror.as_uri())
    model = TIPSModel.from_preset(name)
    preset_dir = tmp_path / "home" / "presets" / name
    assert (preset_dir / "model.weights.h5").exists()
    first = model.encode_texts(["two cows"])
    # A second load must not download again: remove the mirror.
    for path in mirror.iterdir():
        path.unlink()
    again = TIPSModel.from_preset(name)
    np.testing.assert_array_equal(again.encode_texts(["two cows"]), first)


def test_unreachable_source_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_TIPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_TIPS_CHECKPOINT_BASE_URL", (tmp_path / "empty").as_uri())
    with pytest.raises(RuntimeError, match="offline"):
        TIPSModel.from_preset("tips_oss_s14_highres_distilled")


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="registered names"):
        TIPSModel.from_preset("tips_oss_s99")
