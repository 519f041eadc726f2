"""The registered checkpoints as keras-hub presets: listed with their
metadata, and resolved by keras-hub's own loaders (offline: a file://
mirror stands in for the official bucket)."""

import os

import keras
import keras_hub
import numpy as np
import pytest
from keras_hub.src.utils import preset_utils

from keras_tips import TIPS_PRESETS
from keras_tips import TIPSBackbone
from keras_tips import TIPSImageConverter
from keras_tips import TIPSModel
from keras_tips import TIPSTokenizer
from keras_tips.conversion.keras_hub_presets import RegisteredPreset
from tests.conftest import reference_config
from tests.conftest import reference_dir


def test_presets_list_every_registered_checkpoint_without_fetching(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_TIPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_TIPS_CHECKPOINT_BASE_URL", (tmp_path / "empty").as_uri())
    for cls in (TIPSModel, TIPSBackbone, TIPSTokenizer, TIPSImageConverter):
        assert set(cls.presets) == set(TIPS_PRESETS), cls.__name__
    for name, entry in TIPSModel.presets.items():
        metadata = entry["metadata"]
        assert metadata["description"] == TIPS_PRESETS[name]["description"]
        assert metadata["image_size"] == TIPS_PRESETS[name]["config"]["image_size"]
        official = TIPS_PRESETS[name].get("official_params")
        if official:
            # The official counts of the two towers, and two temperatures.
            assert metadata["params"] == official["vision"] + official["text"] + 2
        assert name in repr(entry)
    # Listing never downloads (the mirror is empty; the cache untouched).
    assert not (tmp_path / "home").exists()


def _tiny_entry(name):
    """A registry entry of the tiny reference checkpoint."""
    config = reference_config("tips_tiny")
    vision, text = config["vision"], config["text"]
    return {
        "description": "tiny test checkpoint",
        "config": {
            "vision": {
                "hidden_dim": vision["dim"],
                "num_layers": vision["depth"],
                "num_heads": vision["heads"],
                "intermediate_dim": int(vision["dim"] * vision["mlp_ratio"]),
                "patch_size": vision["patch_size"],
                "position_grid_size": vision["img_size"] // vision["patch_size"],
                "ffn_type": "mlp",
            },
            "text": {
                "vocabulary_size": text["vocab_size"],
                "hidden_dim": text["hidden_size"],
                "num_layers": text["num_layers"],
                "num_heads": text["num_heads"],
                "intermediate_dim": text["mlp_dim"],
                "max_sequence_length": text["max_len"],
            },
            "image_size": vision["img_size"],
        },
        "vision_url": f"https://example.invalid/{name}_vision.npz",
        "text_url": f"https://example.invalid/{name}_text.npz",
        "tokenizer_url": "https://example.invalid/tokenizer.model",
    }


def test_registered_name_resolves_through_keras_hub_loaders(tmp_path, monkeypatch):
    name = "tips_test_tiny"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tiny = reference_dir("tips_tiny")
    for source, target in (
        ("vision.npz", f"{name}_vision.npz"),
        ("text.npz", f"{name}_text.npz"),
        ("tokenizer.model", "tokenizer.model"),
    ):
        with open(os.path.join(tiny, source), "rb") as f:
            (mirror / target).write_bytes(f.read())
    monkeypatch.setitem(TIPS_PRESETS, name, _tiny_entry(name))
    entry = RegisteredPreset(name, TIPSModel)
    monkeypatch.setitem(preset_utils.BUILTIN_PRESETS, name, entry)
    monkeypatch.setitem(preset_utils.BUILTIN_PRESETS_FOR_BACKBONE[TIPSBackbone], name, entry)
    monkeypatch.setenv("KERAS_TIPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_TIPS_CHECKPOINT_BASE_URL", mirror.as_uri())

    assert name in TIPSBackbone.presets
    backbone = TIPSBackbone.from_preset(name)
    assert (tmp_path / "home" / "presets" / name / "model.weights.h5").exists()
    assert entry["metadata"]["params"] == backbone.count_params()
    # keras-hub's base class finds the TIPS class, the tokenizer and the
    # converter load from the same converted preset; nothing is fetched again.
    for path in mirror.iterdir():
        path.unlink()
    generic = keras_hub.models.Backbone.from_preset(name)
    assert isinstance(generic, TIPSBackbone)
    images = np.random.default_rng(0).random((1, 56, 56, 3)).astype("float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(generic.vision_encoder(images)["cls_1"]),
        keras.ops.convert_to_numpy(backbone.vision_encoder(images)["cls_1"]),
    )
    tokenizer = TIPSTokenizer.from_preset(name)
    assert tokenizer.sequence_length == 16
    assert TIPSImageConverter.from_preset(name).image_size == (56, 56)


@pytest.mark.multibackend
def test_keras_hub_base_class_loads_a_tips_preset_directory(tiny_model, reference_presets):
    backbone = keras_hub.models.Backbone.from_preset(reference_presets["tips_tiny"])
    assert isinstance(backbone, TIPSBackbone)
    images = np.random.default_rng(0).random((2, 56, 70, 3)).astype("float32")
    expected = tiny_model.backbone.vision_encoder(images)
    got = backbone.vision_encoder(images)
    for key in ("cls_1", "cls_2", "patches"):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(got[key]), keras.ops.convert_to_numpy(expected[key])
        )
