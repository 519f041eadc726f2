"""`keras-tips convert-dpt` and `keras-tips predict`: DPT heads from the
command line."""

import json
import zipfile

import keras
import numpy as np
import pytest
from PIL import Image

from keras_tips import TIPSDPTHead
from keras_tips import TIPSModel
from keras_tips import normalize_normals
from keras_tips.cli.main import main
from keras_tips.cli.predict import released_head
from keras_tips.conversion.dpt_checkpoint import export_dpt_state
from keras_tips.data.image_files import load_image
from keras_tips.layers.interpolation import resize_bilinear
from keras_tips.models.tips_dpt_presets import TIPS_DPT_PRESETS
from keras_tips.visualize import load_png
from keras_tips.visualize import nearest_resize
from tests.conftest import DPT_TASKS
from tests.conftest import dpt_checkpoint
from tests.conftest import reference_config

LAYERS = reference_config("dpt_tiny")["intermediate_layers"]  # [0, 0, 1, 1]
LAYERS_ARG = ",".join(str(i) for i in LAYERS)
BODY = "decoder/dpt/"


def load(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def weights(head):
    return [keras.ops.convert_to_numpy(v) for v in head.weights]


def config(head):
    return {k: v for k, v in head.get_config().items() if k != "name"}


def convert(checkpoint, output, task="depth", *extra):
    return main([
        "convert-dpt", "--checkpoint", str(checkpoint), "--task", task,
        "--output", str(output), *extra,
    ])


@pytest.fixture(scope="module")
def depth_head(dpt_presets):
    """The reference depth head, converted by the library."""
    return TIPSDPTHead.from_preset(dpt_presets["depth"])


# --- convert-dpt ---------------------------------------------------------


def test_convert_dpt_writes_a_head_preset_from_the_scenic_layout(tmp_path, depth_head, capsys):
    assert convert(dpt_checkpoint("depth"), tmp_path / "depth", "depth", "--layers", LAYERS_ARG) == 0
    out = capsys.readouterr().out
    assert f"Wrote {tmp_path / 'depth'}: depth head" in out
    assert "levels from blocks 0,0,1,1, 16 depth bins from 0.001 to 10 m" in out
    head = TIPSDPTHead.from_preset(str(tmp_path / "depth"))
    assert config(head) == config(depth_head)
    for a, b in zip(weights(head), weights(depth_head)):
        np.testing.assert_array_equal(a, b)


def test_convert_dpt_reads_the_pytorch_layout_and_a_zip(tmp_path, depth_head):
    state = export_dpt_state(depth_head, "pytorch")
    state["bin_centers"] = depth_head.bin_centers
    np.savez(tmp_path / "depth_pytorch.npz", **state)
    archive = tmp_path / "tips_v2_tiny_depth_dpt.zip"  # As released: .npy in a zip.
    with zipfile.ZipFile(archive, "w") as f:
        for key, value in load(dpt_checkpoint("depth")).items():
            np.save(tmp_path / "array.npy", value)
            f.write(tmp_path / "array.npy", key + ".npy")
    for source, output in ((tmp_path / "depth_pytorch.npz", "pytorch"), (archive, "zip")):
        assert convert(source, tmp_path / output, "depth", "--layers", LAYERS_ARG) == 0
        head = TIPSDPTHead.from_preset(str(tmp_path / output))
        for a, b in zip(weights(head), weights(depth_head)):
            np.testing.assert_array_equal(a, b)


def _damaged(tmp_path, change):
    state = load(dpt_checkpoint("depth"))
    change(state)
    np.savez(tmp_path / "damaged.npz", **state)
    return tmp_path / "damaged.npz"


def _drop(key):
    return lambda state: state.pop(BODY + key)


def _add(key, shape):
    return lambda state: state.__setitem__(BODY + key, np.zeros(shape, "float32"))


def _cut(key):
    return lambda state: state.__setitem__(BODY + key, state[BODY + key][:1])


@pytest.mark.parametrize(
    "change, message",
    [
        (_drop("fusion_blocks_2/Conv_0/bias"),
         "missing arrays ['decoder/dpt/fusion_blocks_2/Conv_0/bias']"),
        (_add("fusion_blocks_0/PreActResidualConvUnit_1/conv1/kernel", (3, 3, 16, 16)),
         "unexpected arrays ['decoder/dpt/fusion_blocks_0/PreActResidualConvUnit_1/conv1/kernel']"),
        (_cut("reassemble_blocks/resize_layers_1/kernel"),
         "'decoder/dpt/reassemble_blocks/resize_layers_1/kernel' has shape (1, 2, 16, 16), "
         "expected (2, 2, 16, 16)"),
        (_drop("convs_0/kernel"), "no 'decoder/dpt/convs_0/kernel' (needed for the decoder's width)"),
    ],
    ids=["missing", "unexpected", "misshaped", "missing-size"],
)
def test_convert_dpt_names_a_bad_array(tmp_path, capsys, change, message):
    checkpoint = _damaged(tmp_path, change)
    assert convert(checkpoint, tmp_path / "out", "depth", "--layers", LAYERS_ARG) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-tips convert-dpt: error: ")
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_convert_dpt_refuses_pickles(tmp_path, capsys):
    state = load(dpt_checkpoint("depth"))
    state[BODY + "project/bias"] = np.array([{"a": 1}], dtype=object)
    np.savez(tmp_path / "pickled.npz", **state)  # An object array: pickled inside.
    assert convert(tmp_path / "pickled.npz", tmp_path / "out", "depth", "--layers", LAYERS_ARG) == 2
    assert "without pickle" in capsys.readouterr().err
    import pickle

    (tmp_path / "state.npz").write_bytes(pickle.dumps(load(dpt_checkpoint("depth"))))
    assert convert(tmp_path / "state.npz", tmp_path / "out", "depth", "--layers", LAYERS_ARG) == 2
    assert "is not a NumPy .npz archive" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_convert_dpt_layers_default_to_the_released_heads_of_the_width(tmp_path, capsys):
    # Without --layers a width no released head has is refused ...
    assert convert(dpt_checkpoint("normals"), tmp_path / "tiny", "normals") == 2
    assert "pass the four encoder blocks" in capsys.readouterr().err
    # ... and a ViT-B/14-wide head takes the B/14 blocks (small DPT widths
    # keep the file small; only the width decides).
    head = TIPSDPTHead(
        "normals", input_embed_dim=768, encoder_layers=[0, 0, 0, 0], channels=4,
        post_process_channels=[4, 4, 4, 4],
    )
    np.savez(tmp_path / "b14_normals.npz", **export_dpt_state(head))
    assert convert(tmp_path / "b14_normals.npz", tmp_path / "b14", "normals") == 0
    assert "levels from blocks 2,5,8,11" in capsys.readouterr().out
    with open(tmp_path / "b14" / "config.json", encoding="utf-8") as f:
        assert json.load(f)["config"]["encoder_layers"] == [2, 5, 8, 11]


@pytest.mark.parametrize("layers", ["1,2,3", "a,b,c,d", "0,1,2,-1"])
def test_convert_dpt_layers_must_be_four_blocks(tmp_path, capsys, layers):
    with pytest.raises(SystemExit) as exit_info:
        convert(dpt_checkpoint("depth"), tmp_path / "out", "depth", "--layers", layers)
    assert exit_info.value.code == 2
    assert "expected four comma-separated block indices" in capsys.readouterr().err


def test_convert_dpt_task_and_output_errors(tmp_path, capsys):
    assert convert(dpt_checkpoint("depth"), tmp_path / "out", "normals", "--layers", LAYERS_ARG) == 2
    assert "holds a depth head" in capsys.readouterr().err
    assert convert(dpt_checkpoint("depth"), tmp_path / "out", "depth", "--layers", LAYERS_ARG) == 0
    assert convert(dpt_checkpoint("depth"), tmp_path / "out", "depth", "--layers", LAYERS_ARG) == 2
    assert "overwrite" in capsys.readouterr().err
    assert convert(
        dpt_checkpoint("depth"), tmp_path / "out", "depth", "--layers", LAYERS_ARG, "--overwrite",
        "--max-depth", "5",
    ) == 0
    assert TIPSDPTHead.from_preset(str(tmp_path / "out")).max_depth == 5.0


# --- predict -------------------------------------------------------------

SIZES = {"a.JPG": (90, 60), "b.png": (40, 70), "c.png": (56, 56)}  # (H, W)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Images of three sizes (one at the tiny encoder's 56 px), a truncated
    PNG and a file that is not an image."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, size in SIZES.items():
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(folder / name)
    data = (folder / "b.png").read_bytes()
    (folder / "broken.png").write_bytes(data[: len(data) // 3])
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    return folder


def predict(encoder, task, images, output, *extra):
    return main([
        "predict", "--preset", str(encoder), "--task", task, "--images", str(images),
        "--output", str(output), *extra,
    ])


def native_maps(model, head, folder, names):
    images = np.stack([load_image(str(folder / name), (56, 56)) for name in names])
    return model.predict_dense(images, head, native_resolution=True)


@pytest.mark.parametrize("task", DPT_TASKS)
def test_predict_writes_maps_at_each_image_size_and_counts_unreadable_files(
    tmp_path, capsys, tiny_model, reference_presets, dpt_presets, image_folder, task
):
    encoder, head_dir = reference_presets["tips_tiny"], dpt_presets[task]
    output = tmp_path / "maps"
    extra = {
        # Batches of two: the unreadable file leaves one image in the second.
        "depth": ("--batch-size", "2"),
        "segmentation": ("--class-names", str(tmp_path / "classes.txt")),
        "normals": (),
    }[task]
    (tmp_path / "classes.txt").write_text("sky\ntree\nroad\nwall\ncar\n", encoding="utf-8")
    assert predict(encoder, task, image_folder, output, "--head", head_dir, *extra) == 0
    captured = capsys.readouterr()
    assert (
        f"Wrote 3 {task} maps (PNG and .npy) to {output}; skipped 1 unreadable "
        "file (broken.png)." in captured.out
    )
    assert "Skipped broken.png: Cannot read" in captured.err
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [f"{n}.npy" for n in SIZES] + [f"{n}.png" for n in SIZES] + ["index.json"]
    )
    head = TIPSDPTHead.from_preset(head_dir)
    for name, (height, width) in SIZES.items():
        values = np.load(output / f"{name}.npy", allow_pickle=False)
        picture = load_png(output / f"{name}.png")
        if task == "normals":
            assert values.shape == (height, width, 3) and values.dtype == np.float32
            np.testing.assert_allclose(np.linalg.norm(values, axis=-1), 1.0, atol=1e-5)
            assert picture.shape == (height, width, 3)
        else:
            assert values.shape == (height, width)
            # A legend or a scale bar beside the map.
            assert picture.shape[0] >= height and picture.shape[1] > width
        if task == "segmentation":
            assert values.dtype == np.uint8 and values.max() < head.num_outputs
        if task == "depth":
            assert values.dtype == np.float32
            assert head.min_depth <= values.min() and values.max() <= head.max_depth
    # The maps are the head's on the squash-resized image, brought to each
    # file's size as documented: at the encoder's size (c.png), exactly what
    # predict_dense gives.
    native = native_maps(tiny_model, head, image_folder, ["c.png", "a.JPG"])
    c, a = np.load(output / "c.png.npy"), np.load(output / "a.JPG.npy")
    at_input = keras.ops.convert_to_numpy(resize_bilinear(native, (56, 56), align_corners=False))
    if task == "normals":
        np.testing.assert_allclose(c, normalize_normals(native[0], (56, 56)), atol=1e-5)
        np.testing.assert_allclose(a, normalize_normals(native[1], (90, 60)), atol=1e-5)
    elif task == "depth":
        np.testing.assert_allclose(c, at_input[0, ..., 0], atol=1e-5)
        at_file = resize_bilinear(native[1:], (90, 60), align_corners=False)
        np.testing.assert_allclose(a, keras.ops.convert_to_numpy(at_file)[0, ..., 0], atol=1e-5)
    else:
        np.testing.assert_array_equal(c, at_input[0].argmax(-1))
        np.testing.assert_array_equal(a, nearest_resize(at_input[1].argmax(-1), (90, 60)))
    with open(output / "index.json", encoding="utf-8") as f:
        index = json.load(f)
    assert index["task"] == task and index["image_size"] == [56, 56]
    assert [m["image"] for m in index["maps"]] == sorted(SIZES)
    assert [s["image"] for s in index["skipped"]] == ["broken.png"]
    if task == "segmentation":
        assert index["class_names"] == ["sky", "tree", "road", "wall", "car"]


def test_predict_picks_the_released_head_of_a_registered_encoder():
    for name, entry in TIPS_DPT_PRESETS.items():
        assert released_head(entry["encoder_preset"], entry["config"]["task"]) == name
    assert released_head("tips_v2_oss_b14", "segmentation") == "tips_v2_b14_segmentation_dpt"
    assert released_head("tips_v2_oss_g14", "normals") == "tips_v2_g14_normals_dpt"
    with pytest.raises(ValueError, match="No released depth head decodes 'tips_oss_b14_highres_distilled'.*--head"):
        released_head("tips_oss_b14_highres_distilled", "depth")


def test_predict_errors(tmp_path, capsys, reference_presets, dpt_presets, image_folder):
    encoder = reference_presets["tips_tiny"]
    # A preset directory has no released head: --head is needed.
    assert predict(encoder, "depth", image_folder, tmp_path / "out") == 2
    assert "Pass the head to use with --head" in capsys.readouterr().err
    # The head must predict --task.
    args = ("--head", dpt_presets["normals"])
    assert predict(encoder, "depth", image_folder, tmp_path / "out", *args) == 2
    assert "predicts normals, not depth" in capsys.readouterr().err
    # No image at all, or none readable.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert predict(encoder, "normals", empty, tmp_path / "out", *args) == 2
    assert "No images (.png, .jpg" in capsys.readouterr().err
    (empty / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    assert predict(encoder, "normals", empty, tmp_path / "out", *args) == 2
    assert "None of the 1 image files" in capsys.readouterr().err
    assert predict(encoder, "normals", tmp_path / "absent", tmp_path / "out", *args) == 2
    assert "is not a folder" in capsys.readouterr().err
    # Class names must name every output of a segmentation head.
    names = tmp_path / "classes.txt"
    names.write_text("sky\ntree\n", encoding="utf-8")
    args = ("--head", dpt_presets["segmentation"], "--class-names", str(names))
    assert predict(encoder, "segmentation", image_folder, tmp_path / "out", *args) == 2
    assert "names 2 classes; the head predicts 5" in capsys.readouterr().err
