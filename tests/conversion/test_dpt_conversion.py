"""Converting DPT decoder checkpoints: the released Scenic layout (as `.npz`
or `.zip`), the PyTorch key layout the official loader also accepts, and
clear errors for anything that does not fit."""

import os
import zipfile

import keras
import numpy as np
import pytest

from keras_tips import CheckpointError
from keras_tips import convert_dpt_checkpoint
from keras_tips.conversion.convert import build_dpt_head_from_checkpoint
from keras_tips.conversion.dpt_checkpoint import default_encoder_layers
from keras_tips.conversion.dpt_checkpoint import export_dpt_state
from tests.conftest import dpt_checkpoint
from tests.conftest import reference_config

LAYERS = reference_config("dpt_tiny")["intermediate_layers"]
BODY = "decoder/dpt/"


def load(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def build(path, task, **kwargs):
    kwargs.setdefault("encoder_layers", LAYERS)
    return build_dpt_head_from_checkpoint(str(path), task, **kwargs)


def config(head):
    return {k: v for k, v in head.get_config().items() if k != "name"}


def weights(head):
    return [keras.ops.convert_to_numpy(v) for v in head.weights]


@pytest.fixture(scope="module")
def depth_head():
    return build(dpt_checkpoint("depth"), "depth")


def test_sizes_are_inferred_from_the_arrays(depth_head):
    config = depth_head.get_config()
    decoder = reference_config("dpt_tiny")["decoder"]
    assert config["input_embed_dim"] == decoder["input_embed_dim"]
    assert config["channels"] == decoder["channels"]
    assert config["post_process_channels"] == decoder["post_process_channels"]
    assert config["readout_type"] == "project"
    assert config["num_outputs"] == reference_config("dpt_tiny")["depth"]["num_depth_bins"]
    assert (config["min_depth"], config["max_depth"]) == (0.001, 10.0)
    assert config["encoder_layers"] == LAYERS
    segmentation = build(dpt_checkpoint("segmentation"), "segmentation")
    assert segmentation.num_outputs == reference_config("dpt_tiny")["segmentation"]["num_classes"]


def test_export_reproduces_the_checkpoint_exactly(depth_head):
    """Every array is used, once, with the official layout changes."""
    original = load(dpt_checkpoint("depth"))
    exported = export_dpt_state(depth_head, "scenic")
    assert sorted(exported) == sorted(original)
    for key, value in original.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_zip_archive_of_npy_arrays(tmp_path, depth_head):
    """The released files are zip archives of `.npy` arrays (any name)."""
    path = tmp_path / "tips_v2_tiny_depth_dpt.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("decoder/", b"")  # A folder entry, as zip tools write.
        for key, value in load(dpt_checkpoint("depth")).items():
            local = tmp_path / "array.npy"
            np.save(local, value)
            archive.write(local, key + ".npy")
    head = build(path, "depth")
    for a, b in zip(weights(head), weights(depth_head)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("legacy", [False, True])
def test_pytorch_key_layout(tmp_path, depth_head, legacy):
    """The state-dict layout of the official `load_decoder_weights`: its
    transposed-convolution kernels are flipped on loading, as officially."""
    state = export_dpt_state(depth_head, "pytorch")
    assert "dpt.reassemble.resize_layers.0.weight" in state and "head.weight" in state
    if legacy:  # Keys without `dpt.`, the head named after its task.
        state = {
            key.replace("dpt.", "", 1).replace("head.", "pixel_depth_classif.", 1): value
            for key, value in state.items()
        }
    state["bin_centers"] = depth_head.bin_centers
    np.savez(tmp_path / "depth_pytorch.npz", **state)
    head = build(tmp_path / "depth_pytorch.npz", "depth")
    assert config(head) == config(depth_head)
    for a, b in zip(weights(head), weights(depth_head)):
        np.testing.assert_array_equal(a, b)
    # bin_centers also give the depth range.
    state["bin_centers"] = np.linspace(0.5, 4.0, depth_head.num_outputs).astype("float32")
    np.savez(tmp_path / "depth_range.npz", **state)
    head = build(tmp_path / "depth_range.npz", "depth")
    assert (head.min_depth, head.max_depth) == (0.5, 4.0)


def test_convert_writes_a_preset(tmp_path):
    head = convert_dpt_checkpoint(
        dpt_checkpoint("normals"), "normals", tmp_path / "normals", encoder_layers=LAYERS
    )
    assert sorted(os.listdir(tmp_path / "normals")) == [
        "config.json", "metadata.json", "model.weights.h5"
    ]
    assert head.task == "normals"
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_dpt_checkpoint(
            dpt_checkpoint("normals"), "normals", tmp_path / "normals", encoder_layers=LAYERS
        )
    convert_dpt_checkpoint(
        dpt_checkpoint("normals"), "normals", tmp_path / "normals",
        encoder_layers=LAYERS, overwrite=True,
    )


def write(tmp_path, state, name="damaged.npz"):
    np.savez(tmp_path / name, **state)
    return tmp_path / name


def test_missing_array_is_named(tmp_path):
    state = load(dpt_checkpoint("depth"))
    del state[BODY + "fusion_blocks_2/PreActResidualConvUnit_1/conv2/kernel"]
    missing = "missing arrays.*fusion_blocks_2/PreActResidualConvUnit_1/conv2/kernel"
    with pytest.raises(CheckpointError, match=missing):
        build(write(tmp_path, state), "depth")


def test_missing_readout_is_not_taken_for_another_structure(tmp_path):
    state = load(dpt_checkpoint("depth"))
    state = {key: value for key, value in state.items() if "readout" not in key}
    with pytest.raises(CheckpointError, match="missing arrays.*readout_projects_0/bias"):
        build(write(tmp_path, state), "depth")


def test_missing_array_needed_for_the_sizes_is_named(tmp_path):
    state = load(dpt_checkpoint("depth"))
    del state[BODY + "convs_0/kernel"]
    with pytest.raises(CheckpointError, match="convs_0/kernel.*width"):
        build(write(tmp_path, state), "depth")


def test_unexpected_array_is_named(tmp_path):
    state = load(dpt_checkpoint("depth"))
    state[BODY + "fusion_blocks_0/PreActResidualConvUnit_1/conv1/kernel"] = np.zeros(
        (3, 3, 16, 16), "float32"
    )
    unexpected = "unexpected arrays.*fusion_blocks_0/PreActResidualConvUnit_1"
    with pytest.raises(CheckpointError, match=unexpected):
        build(write(tmp_path, state), "depth")


def test_misshaped_array_is_named(tmp_path):
    state = load(dpt_checkpoint("depth"))
    key = BODY + "reassemble_blocks/resize_layers_1/kernel"
    state[key] = state[key][:1]
    message = r"resize_layers_1/kernel' has shape \(1, 2, 16, 16\), expected \(2, 2, 16, 16\)"
    with pytest.raises(CheckpointError, match=message):
        build(write(tmp_path, state), "depth")


def test_pytorch_layout_errors_name_its_keys(tmp_path, depth_head):
    state = export_dpt_state(depth_head, "pytorch")
    del state["dpt.project.bias"]
    state["dpt.convs.1.weight"] = state["dpt.convs.1.weight"][:, :, :1]
    state["dpt.extra.weight"] = np.zeros(2, "float32")
    with pytest.raises(CheckpointError) as error:
        build(write(tmp_path, state), "depth")
    message = str(error.value)
    assert "missing arrays ['dpt.project.bias']" in message
    assert "unexpected arrays ['dpt.extra.weight']" in message
    assert "'dpt.convs.1.weight' has shape (16, 16, 1, 3), expected (16, 16, 3, 3)" in message


def test_two_task_heads_are_refused(tmp_path, depth_head):
    state = load(dpt_checkpoint("depth"))
    state["decoder/pixel_normals/bias"] = np.zeros(3, "float32")
    with pytest.raises(CheckpointError, match="several task heads"):
        build(write(tmp_path, state), "depth")
    state = export_dpt_state(depth_head, "pytorch")
    state["pixel_normals.bias"] = state.pop("head.bias")
    state["pixel_depth_classif.weight"] = state.pop("head.weight")
    with pytest.raises(CheckpointError, match="several task heads"):
        build(write(tmp_path, state, "pytorch.npz"), "depth")


def test_pickled_npz_is_refused(tmp_path):
    state = load(dpt_checkpoint("depth"))
    state[BODY + "project/bias"] = np.array([{"a": 1}], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **state)
    with pytest.raises(CheckpointError, match="without pickle"):
        build(path, "depth")


def test_not_an_archive(tmp_path):
    path = tmp_path / "depth.zip"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(CheckpointError, match="not a NumPy .npz archive"):
        build(path, "depth")
    with pytest.raises(CheckpointError, match="does not exist"):
        build(tmp_path / "absent.zip", "depth")


def test_task_must_match_the_checkpoint_head(tmp_path):
    with pytest.raises(CheckpointError, match="holds a depth head.*task='depth'"):
        build(dpt_checkpoint("depth"), "normals")
    with pytest.raises(ValueError, match="task"):
        build(dpt_checkpoint("depth"), "classification")


def test_encoder_layers_default_to_the_released_heads(tmp_path):
    assert default_encoder_layers(768) == [2, 5, 8, 11]
    assert default_encoder_layers(1024) == [5, 11, 17, 23]
    assert default_encoder_layers(1152) == [6, 13, 20, 26]
    assert default_encoder_layers(1536) == [9, 19, 29, 39]
    with pytest.raises(CheckpointError, match="--layers"):
        build_dpt_head_from_checkpoint(dpt_checkpoint("depth"), "depth")
    with pytest.raises(ValueError, match="four image-tower blocks"):
        build(dpt_checkpoint("depth"), "depth", encoder_layers=[0, 1])


def test_depth_range_only_for_depth():
    with pytest.raises(ValueError, match="depth heads only"):
        build(dpt_checkpoint("normals"), "normals", min_depth=0.1)

