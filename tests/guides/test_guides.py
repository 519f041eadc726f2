"""The guides run from start to end as scripts and print what they promise.

Each guide runs in a fresh interpreter (`python guides/<name>.py`, as a reader
would run it) on JAX from the repository root, writing its files under a
temporary directory given by `KERAS_TIPS_GUIDE_OUTPUT`. The distribution
guide runs on 8 virtual CPU devices (slow: three SPMD compilations of the
train step); without them it only explains how to run it.
"""

import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUIDES_DIR = os.path.join(ROOT, "guides")
GUIDES = (
    "using_pretrained_tips",
    "converting_official_checkpoints",
    "pretraining_tips",
    "scaling_with_keras_distribution",
    "segmentation_head_on_frozen_tips",
    "dpt_heads_on_frozen_tips",
)


def run_guide(name, tmp_path, device_count=None, finishes=True, quick=False):
    """Runs a guide; returns its stdout. Fails with the output's tail.

    `device_count` sets the number of (virtual) JAX CPU devices; `finishes`
    False expects the guide to stop early (successfully) instead of printing
    its final "Done" line; `quick` sets `KERAS_TIPS_GUIDE_QUICK=1` (a guide
    that reads it runs at a reduced size).
    """
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONHASHSEED="0",
        KERAS_TIPS_GUIDE_OUTPUT=str(tmp_path / "output"),
        KERAS_TIPS_HOME=str(tmp_path / "keras_tips_home"),
    )
    env.pop("KERAS_TIPS_CHECKPOINT_BASE_URL", None)
    env.pop("XLA_FLAGS", None)
    env.pop("KERAS_TIPS_GUIDE_QUICK", None)
    if quick:
        env["KERAS_TIPS_GUIDE_QUICK"] = "1"
    if device_count is not None:
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={device_count}"
    result = subprocess.run(
        [sys.executable, os.path.join("guides", f"{name}.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (
        f"guides/{name}.py exited with {result.returncode}\n"
        f"--- stdout (tail) ---\n{result.stdout[-3000:]}\n"
        f"--- stderr (tail) ---\n{result.stderr[-3000:]}"
    )
    assert (f"Done: {name}" in result.stdout) == finishes, result.stdout[-3000:]
    return result.stdout


def output_file(tmp_path, name, file):
    return tmp_path / "output" / name / file


@pytest.mark.parametrize("name", GUIDES)
def test_guide_has_a_keras_io_header(name):
    with open(os.path.join(GUIDES_DIR, f"{name}.py"), encoding="utf-8") as f:
        source = f.read()
    module = ast.parse(source)
    header = ast.get_docstring(module, clean=False)
    assert header is not None, "the guide starts with its header docstring"
    for field in ("Title", "Author", "Date created", "Last modified", "Description"):
        assert re.search(rf"^{field}: \S", header, re.MULTILINE), field
    assert "Author: keras_tips contributors" in header
    # Prose is in module-level strings between the code.
    prose = [
        node for node in module.body[1:]
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    ]
    assert len(prose) >= 5


def test_using_pretrained_tips(tmp_path):
    name = "using_pretrained_tips"
    out = run_guide(name, tmp_path)
    assert "Preprocessed: (4, 56, 56, 3) float32" in out
    assert "cls_1    (4, 64)" in out
    assert "patches  (4, 16, 64)" in out
    assert "Text embeddings: (2, 64)" in out
    assert "CLS1 zero-shot: astronaut.png" in out
    assert "CLS2 retrieval: chelsea.png" in out
    assert "Patch grid: (4, 4, 4, 64)" in out
    assert "Similarity maps: (4, 16, 16)" in out
    assert "Predicted masks: (4, 112, 112)" in out
    assert "112 x 168 px -> grid 8 x 12, patches (1, 96, 64)" in out
    assert "received 100 x 100" in out
    assert "intermediate_patches: (1, 2, 16, 64)" in out
    for file in ("pca.png", "similarity.png", "zero_shot_segmentation.png"):
        assert output_file(tmp_path, name, file).is_file(), file


def test_converting_official_checkpoints(tmp_path):
    name = "converting_official_checkpoints"
    out = run_guide(name, tmp_path)
    assert "exit status: 0" in out
    assert "model.weights.h5" in out
    for key in ("cls_1", "cls_2", "patches", "texts"):
        assert f"max |keras - official| for {key}" in out
    assert "downloads/: tips_tiny_demo_text.npz, tips_tiny_demo_vision.npz, tokenizer.model" in out
    assert "Same text embedding after reloading: True" in out
    for error in (
        "Unknown name:\n  ValueError",
        "Unreachable download:\n  RuntimeError",
        "Files swapped:\n  CheckpointError",
        "Truncated download:\n  CheckpointError",
        "Missing array:\n  CheckpointError",
        "Existing output:\n  FileExistsError",
        "Incomplete preset:\n  FileNotFoundError",
    ):
        assert error in out, error
    assert re.search(r"(torch|tensorflow) vs jax: max difference", out)
    # The registry demonstration used the guide's own cache, not ~/.keras.
    assert output_file(tmp_path, name, "keras_tips_home/presets/tips_tiny_demo").is_dir()


def test_pretraining_tips(tmp_path):
    name = "pretraining_tips"
    out = run_guide(name, tmp_path)
    assert "global_images            float32  (16, 56, 56, 3)" in out
    assert "local_images             float32  (16, 2, 28, 28, 3)" in out
    assert "patch_mask               bool     (16, 16)" in out
    # Its settings come from recipes/tiny_shapes.py, followed fields filled in.
    assert "global crop 56 px (4 x 4 patches), 2 local crops of 28 px" in out
    assert "mask: PatchMaskConfig(ratio=0.5, mode='random', probability=0.5, min_block_patches=4)" in out
    assert "'patch_size': 14" in out and "'position_grid_size': 4" in out
    assert "'max_sequence_length': 16" in out
    assert "at 112 px: crop 112 | position grid 8 | evaluation 112" in out
    assert "refused: optimizer.total_steps=500 contradicts train.total_steps=2400" in out
    assert "steps trained: 30" in out
    match = re.search(r"max \|loss - weighted sum\|: (\S+)", out)
    assert match and float(match.group(1)) < 1e-3
    assert (
        "checkpoints: ['data_process_0', 'latest', 'step_00000008', 'step_00000016']"
        in out
    )
    assert "resumed run ends like the uninterrupted one: True" in out
    assert output_file(tmp_path, name, "run/preset/model.weights.h5").is_file()
    assert output_file(tmp_path, name, "tiny_tips_preset/model.weights.h5").is_file()


@pytest.mark.slow
def test_scaling_with_keras_distribution(tmp_path):
    out = run_guide("scaling_with_keras_distribution", tmp_path, device_count=8)
    assert "devices: 8" in out
    assert "mesh: (8,) ['batch']" in out
    assert "data parallel vs unsharded, contrastive_web" in out
    assert "model parallel vs unsharded, contrastive_web" in out
    assert "P(None, 'model')" in out
    assert "global-batch loss (16 x 16 logits)" in out


def test_scaling_guide_explains_itself_on_one_device(tmp_path):
    out = run_guide(
        "scaling_with_keras_distribution", tmp_path, device_count=1, finishes=False
    )
    assert "devices: 1" in out
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=8" in out


def test_segmentation_head_on_frozen_tips(tmp_path):
    name = "segmentation_head_on_frozen_tips"
    out = run_guide(name, tmp_path)
    assert "output: (None, 112, 112, 7)" in out
    assert "trainable parameters: 9,223 (head); frozen: 139,328 (TIPS encoder)" in out
    assert "encoder weights unchanged by training: True" in out
    match = re.search(r"test mIoU: (\S+) \(predicting background everywhere: (\S+)\)", out)
    assert match, out[-2000:]
    assert 0.0 < float(match.group(1)) <= 1.0
    assert "same predictions: True" in out
    assert "trainable parameters after unfreezing: 148,551" in out
    assert output_file(tmp_path, name, "predictions.png").is_file()
    assert output_file(tmp_path, name, "tips_segmenter.keras").is_file()


def test_dpt_heads_on_frozen_tips(tmp_path):
    name = "dpt_heads_on_frozen_tips"
    out = run_guide(name, tmp_path, quick=True)
    assert "quick run: True" in out
    assert "encoder: width 64, 4 blocks, patch size 14" in out
    assert "segmentation output: (None, 56, 56, 7)" in out
    assert "depth        output: (None, 56, 56, 1)" in out
    assert "encoder weights unchanged by training: True" in out
    # Each head beats what it scores without looking at the image.
    match = re.search(r"segmentation mIoU: (\S+) \(background everywhere: (\S+)\)", out)
    assert match, out[-2000:]
    assert float(match.group(1)) > float(match.group(2)) + 0.01, match.group(0)
    match = re.search(r"depth RMSE: (\S+) \(mean depth everywhere: (\S+)\)", out)
    assert match, out[-2000:]
    # Few pretraining steps in the quick run: the depth head gains only a few
    # per cent over the mean depth (0.197 against 0.207 when last measured).
    assert float(match.group(1)) < float(match.group(2)), match.group(0)
    match = re.search(r"predict_dense with the reloaded head: \(8, 56, 56, 1\), max difference (\S+)", out)
    assert match, out[-2000:]
    assert float(match.group(1)) < 1e-4
    assert output_file(tmp_path, name, "dense_predictions.png").is_file()
    assert output_file(tmp_path, name, "depth_head_preset/model.weights.h5").is_file()
