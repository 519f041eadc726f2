"""`TIPSDPTHead`: configuration and serialisation round trips, presets (a
registered name fetched from a `file://` mirror, converted once and reused),
the registry of released heads, and clear errors."""

import os
import shutil

import keras
import numpy as np
import pytest

from keras_tips import TIPS_DPT_PRESETS
from keras_tips import TIPS_PRESETS
from keras_tips import CheckpointError
from keras_tips import TIPSDPTHead
from tests.conftest import dpt_checkpoint
from tests.conftest import reference_config
from tests.conftest import reference_golden

LAYERS = reference_config("dpt_tiny")["intermediate_layers"]


def levels(prefix="image_1"):
    golden = reference_golden("dpt_tiny")
    return [
        (
            golden[f"{prefix}_feat_cls"][level],
            np.transpose(golden[f"{prefix}_feat_patches"][level], (0, 2, 3, 1)),
        )
        for level in range(4)
    ]


def run(head, features):
    return keras.ops.convert_to_numpy(head(features))


@pytest.fixture(scope="module")
def depth_head(dpt_presets):
    return TIPSDPTHead.from_preset(dpt_presets["depth"])


def test_config_round_trip():
    head = TIPSDPTHead(
        "segmentation", 64, [0, 0, 1, 1], num_outputs=5, channels=16,
        readout_type="ignore", output_activation=True, name="seg",
    )
    config = head.get_config()
    assert config["post_process_channels"] == [8, 16, 32, 64]
    assert config["min_depth"] is None
    restored = TIPSDPTHead.from_config(config)
    assert restored.get_config() == config
    assert len(restored.weights) == len(head.weights)
    # An "ignore" readout has no projection weights.
    assert not any("readout" in v.path for v in head.weights)
    serialised = keras.saving.serialize_keras_object(head)
    assert keras.saving.deserialize_keras_object(serialised).get_config() == config


@pytest.mark.multibackend
def test_preset_round_trip(depth_head, tmp_path):
    depth_head.save_to_preset(str(tmp_path / "preset"))
    again = TIPSDPTHead.from_preset(str(tmp_path / "preset"))
    assert again.get_config() == depth_head.get_config()
    features = levels()
    np.testing.assert_array_equal(run(again, features), run(depth_head, features))
    # Without weights: the same head, freshly initialised.
    fresh = TIPSDPTHead.from_preset(str(tmp_path / "preset"), load_weights=False)
    assert fresh.get_config() == depth_head.get_config()


@pytest.mark.multibackend
def test_keras_model_file_round_trip(depth_head, tmp_path):
    path = str(tmp_path / "head.keras")
    depth_head.save(path)
    again = keras.saving.load_model(path)  # safe mode
    assert isinstance(again, TIPSDPTHead)
    features = levels()
    np.testing.assert_array_equal(run(again, features), run(depth_head, features))


def test_damaged_or_foreign_presets_are_named(depth_head, tmp_path, reference_presets):
    preset = tmp_path / "preset"
    depth_head.save_to_preset(str(preset))
    (preset / "config.json").write_text('{"class_name": "TIPSDPTHead", "config": ')
    with pytest.raises(ValueError, match="config.json.*not valid JSON"):
        TIPSDPTHead.from_preset(str(preset))
    os.remove(preset / "config.json")
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        TIPSDPTHead.from_preset(str(preset))
    with pytest.raises(ValueError, match="does not hold a TIPSDPTHead.*TIPSModel"):
        TIPSDPTHead.from_preset(reference_presets["tips_tiny"])
    with pytest.raises(ValueError, match="registered names"):
        TIPSDPTHead.from_preset("tips_v2_b14_classification_dpt")


def test_bad_features_give_clear_errors(depth_head):
    features = levels()
    with pytest.raises(ValueError, match="4 .cls, patch_map. pairs"):
        depth_head(features[:3])
    channels_first = [(c, np.transpose(p, (0, 3, 1, 2))) for c, p in features]
    with pytest.raises(ValueError, match="width"):
        depth_head(channels_first)
    with pytest.raises(ValueError, match=r"\(B, h, w, D\)"):
        depth_head([(c, p[:, 0]) for c, p in features])


def test_invalid_configurations():
    with pytest.raises(ValueError, match="task"):
        TIPSDPTHead("classification", 64, LAYERS)
    with pytest.raises(ValueError, match="3 values"):
        TIPSDPTHead("normals", 64, LAYERS, num_outputs=4)
    with pytest.raises(ValueError, match="depth heads only"):
        TIPSDPTHead("segmentation", 64, LAYERS, min_depth=0.1)
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        TIPSDPTHead("depth", 64, LAYERS, min_depth=2.0, max_depth=1.0)
    with pytest.raises(ValueError, match="readout_type"):
        TIPSDPTHead("depth", 64, LAYERS, readout_type="add")


def test_predict_dense_checks_the_head_fits(depth_head, tiny_model, reference_presets):
    from keras_tips import TIPSModel

    images = np.zeros((1, 28, 28, 3), "float32")
    wide_model = TIPSModel.from_preset(reference_presets["tips_tiny_swiglu"])
    with pytest.raises(ValueError, match="width 64.*width 96"):
        wide_model.predict_dense(images, depth_head)
    deep = TIPSDPTHead.from_config(
        {**depth_head.get_config(), "encoder_layers": [0, 1, 2, 3]}
    )
    with pytest.raises(ValueError, match=r"blocks \[0, 1, 2, 3\].*2 blocks"):
        tiny_model.predict_dense(images, deep)


def test_predict_dense_batches_and_takes_a_preset(depth_head, tiny_model, dpt_presets):
    images = np.transpose(reference_golden("dpt_tiny")["image_0"], (0, 2, 3, 1))
    together = tiny_model.predict_dense(images, depth_head, native_resolution=True)
    one_by_one = tiny_model.predict_dense(
        images, dpt_presets["depth"], batch_size=1, native_resolution=True
    )
    np.testing.assert_allclose(one_by_one, together, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_model.predict_dense(images, depth_head, batch_size=0)


def test_encoder_returns_the_blocks_asked_for(tiny_model):
    encoder = tiny_model.backbone.vision_encoder
    spec = encoder.compute_output_spec(
        keras.KerasTensor((2, 28, 42, 3)), return_intermediates=(1, 0, 1)
    )
    assert spec["intermediate_patches"].shape == (2, 3, 6, encoder.hidden_dim)
    assert spec["intermediate_cls_1"].shape == (2, 3, encoder.hidden_dim)
    with pytest.raises(ValueError, match=r"\[2\] are out of range.*2 blocks"):
        encoder.intermediate_blocks([0, 2])
    with pytest.raises(ValueError, match="bool or a sequence"):
        encoder.intermediate_blocks(1.5)


def test_registry_lists_the_released_heads():
    expected = {
        f"tips_v2_{model}_{task}_dpt"
        for model in ("b14", "l14", "so400m14", "g14")
        for task in ("segmentation", "depth", "normals")
    }
    assert set(TIPS_DPT_PRESETS) == expected
    assert TIPSDPTHead.presets_available() == sorted(expected)
    layers = {
        "b14": [2, 5, 8, 11],
        "l14": [5, 11, 17, 23],
        "so400m14": [6, 13, 20, 26],
        "g14": [9, 19, 29, 39],
    }
    for name, entry in TIPS_DPT_PRESETS.items():
        config = entry["config"]
        assert entry["url"] == (
            f"https://storage.googleapis.com/tips_data/v2_0/checkpoints/scenic/{name}.zip"
        )
        assert config["encoder_layers"] == layers[name.split("_")[2]]
        vision = TIPS_PRESETS[entry["encoder_preset"]]["config"]["vision"]
        width = vision["hidden_dim"]
        assert config["input_embed_dim"] == width
        assert config["post_process_channels"] == [width // 8, width // 4, width // 2, width]
        assert max(config["encoder_layers"]) == vision["num_layers"] - 1
        outputs = {"segmentation": 150, "depth": 256, "normals": 3}
        assert config["num_outputs"] == outputs[config["task"]]


def test_registry_is_data():
    """Fetching and converting live in `conversion/`: the registry imports
    only the encoders' registry (for their widths)."""
    import ast

    from keras_tips.models import tips_dpt_presets

    with open(tips_dpt_presets.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imports = [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    ]
    assert imports == ["from keras_tips.models.tips_presets import TIPS_PRESETS"]


@pytest.mark.slow
def test_registered_b14_configs_build():
    for task in ("segmentation", "depth", "normals"):
        head = TIPSDPTHead(**TIPS_DPT_PRESETS[f"tips_v2_b14_{task}_dpt"]["config"])
        assert head.output_channels == {"segmentation": 150, "depth": 1, "normals": 3}[task]
        del head
        keras.backend.clear_session()


def _mirror(tmp_path, monkeypatch, name, **config_changes):
    """A registry entry for the reference depth head, served by a mirror."""
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    shutil.copy(dpt_checkpoint("depth"), mirror / f"{name}.zip")
    decoder = reference_config("dpt_tiny")["decoder"]
    config = {
        "task": "depth",
        "input_embed_dim": decoder["input_embed_dim"],
        "encoder_layers": LAYERS,
        "channels": decoder["channels"],
        "post_process_channels": decoder["post_process_channels"],
        "readout_type": decoder["readout_type"],
        "num_outputs": 16,
        "min_depth": 0.001,
        "max_depth": 10.0,
        **config_changes,
    }
    entry = {
        "description": "test entry",
        "encoder_preset": "tips_v2_oss_b14",
        "config": config,
        "url": f"https://example.invalid/{name}.zip",
    }
    monkeypatch.setitem(TIPS_DPT_PRESETS, name, entry)
    monkeypatch.setenv("KERAS_TIPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_TIPS_CHECKPOINT_BASE_URL", mirror.as_uri())
    return mirror


@pytest.mark.multibackend
def test_registered_head_is_fetched_converted_once_and_reused(tmp_path, monkeypatch):
    """The online path, offline: a file:// mirror stands in for the bucket."""
    name = "tips_test_tiny_depth_dpt"
    mirror = _mirror(tmp_path, monkeypatch, name)
    head = TIPSDPTHead.from_preset(name)
    assert (tmp_path / "home" / "presets" / name / "model.weights.h5").exists()
    golden = reference_golden("dpt_tiny")
    expected = np.transpose(golden["image_1_depth_native"], (0, 2, 3, 1))
    np.testing.assert_allclose(run(head, levels()), expected, atol=1e-5, rtol=0)
    # A second load must not download again: empty the mirror.
    shutil.rmtree(mirror)
    again = TIPSDPTHead.from_preset(name)
    np.testing.assert_array_equal(run(again, levels()), run(head, levels()))


def test_registered_configuration_is_checked(tmp_path, monkeypatch):
    name = "tips_test_tiny_depth_dpt"
    _mirror(tmp_path, monkeypatch, name, channels=32)
    with pytest.raises(CheckpointError, match="channels 16 .registered: 32."):
        TIPSDPTHead.from_preset(name)
    assert not (tmp_path / "home" / "presets" / name).exists()


def test_unreachable_source_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_TIPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_TIPS_CHECKPOINT_BASE_URL", (tmp_path / "empty").as_uri())
    with pytest.raises(
        RuntimeError,
        match="offline.*`keras-tips convert-dpt --checkpoint FILE --task normals --output DIR`",
    ):
        TIPSDPTHead.from_preset("tips_v2_b14_normals_dpt")


def _dense_model(encoder, heads, image_size):
    """A functional model: uint8 images -> frozen encoder blocks -> heads."""
    grid = image_size // encoder.patch_size
    layers = heads[0].encoder_layers
    images = keras.Input((image_size, image_size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1.0 / 255.0)(images)
    blocks = encoder(x, training=False, return_intermediates=layers)
    features = [
        (
            blocks["intermediate_cls_1"][:, level],
            keras.layers.Reshape((grid, grid, encoder.hidden_dim))(
                blocks["intermediate_patches"][:, level]
            ),
        )
        for level in range(len(layers))
    ]
    outputs = {
        heads[0].task: heads[0](features, image_size=(image_size, image_size)),
        heads[1].task: heads[1](features),
    }
    return keras.Model(images, outputs)


@pytest.mark.multibackend
def test_heads_train_with_fit_on_a_frozen_encoder(tmp_path):
    from keras_tips import TIPSVisionEncoder

    keras.utils.set_random_seed(0)
    encoder = TIPSVisionEncoder(
        hidden_dim=16, num_layers=2, num_heads=2, intermediate_dim=32,
        position_grid_size=3,
    )
    # Frozen once built, as the guides do: on TensorFlow, the dense layers of
    # an encoder frozen before it is built still create trainable variables.
    encoder.build()
    encoder.trainable = False
    layers = (0, 0, 1, 1)
    segmentation = TIPSDPTHead(
        "segmentation", 16, layers, num_outputs=3, channels=8, name="segmentation"
    )
    depth = TIPSDPTHead(
        "depth", 16, layers, num_outputs=4, channels=8, min_depth=0.1,
        max_depth=1.0, name="depth",
    )
    # A 3 x 3 (odd) patch grid: the head's own map is 16 * ceil(3 / 2) = 32.
    model = _dense_model(encoder, [segmentation, depth], image_size=42)
    assert tuple(model.output["segmentation"].shape) == (None, 42, 42, 3)
    assert tuple(model.output["depth"].shape) == (None, 32, 32, 1)
    assert not encoder.trainable_weights
    assert len(model.trainable_weights) == len(segmentation.weights) + len(depth.weights)

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 42, 42, 3)).astype("uint8")
    outputs = model.predict(images, verbose=0)
    # The symbolic shapes are those of the computed maps.
    assert outputs["segmentation"].shape == (4, 42, 42, 3)
    assert outputs["depth"].shape == (4, 32, 32, 1)

    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss={
            "segmentation": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "depth": "mae",
        },
    )
    encoder_before = [w.copy() for w in encoder.get_weights()]
    heads_before = [w.copy() for w in segmentation.get_weights() + depth.get_weights()]
    targets = {
        "segmentation": rng.integers(0, 3, (4, 42, 42)),
        "depth": rng.uniform(0.2, 0.9, (4, 32, 32, 1)).astype("float32"),
    }
    history = model.fit(images, targets, batch_size=2, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    for before, after in zip(encoder_before, encoder.get_weights()):
        np.testing.assert_array_equal(before, after)
    heads_after = segmentation.get_weights() + depth.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(heads_before, heads_after))

    path = str(tmp_path / "dense.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)  # safe mode
    expected = model.predict(images, verbose=0)
    again = reloaded.predict(images, verbose=0)
    for key in expected:
        np.testing.assert_allclose(again[key], expected[key], atol=1e-5)
