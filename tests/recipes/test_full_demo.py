"""The full demo learns: the tiny_shapes recipe at its real length."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_full_demo_learns(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "keras_tips.cli", "demo", "--output", str(tmp_path / "demo"),
         "--recipe", os.path.join(ROOT, "recipes", "tiny_shapes.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # Not a terminal: the progress bar is one line per tenth of the run.
    assert "Pretraining: step" in result.stderr, result.stderr[-4000:]
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    chance = results["chance/zero_shot_colour_top1"]
    # The demo's goals for what it learns on unseen scenes: zero-shot shape
    # >= 0.6 and colour >= 0.9 (chance 1/6). The README table's run of this
    # recipe gave 0.64 and 1.0; the run is seeded, so on the same machine
    # and library versions this one repeats it.
    assert results["zero_shot/cls_1/top1"] >= 0.6, results
    assert results["zero_shot_colour/cls_1/top1"] >= 0.9, results
    assert results["zero_shot_colour/cls_2/top1"] > 3 * chance, results
    assert results["knn/cls_1/top1"] > results["random_init/knn/cls_1/top1"], results
    assert (results["segmentation_probe/miou"]
            > results["random_init/segmentation_probe/miou"] + 0.03), results
    assert (results["foreground_probe/miou"]
            > results["random_init/foreground_probe/miou"] + 0.1), results
    assert results["depth_probe/rmse"] < results["random_init/depth_probe/rmse"], results
    # 300 candidates: chance R@5 is 5/300.
    assert results["retrieval_synthetic/cls_2/text_to_image/recall@5"] > 0.2, results
