"""The benchmarks compare like with like, and their reports add up.

No speed is asserted here: these tests only check that the plain PyTorch
peer computes the same network as `keras_tips` and that the report code
turns measured rates into the right ratios.
"""

import numpy as np
import pytest

from benchmarks import common
from benchmarks import image_encoder
from benchmarks import run_all
from benchmarks import train_step


def test_plain_torch_peer_computes_the_keras_tips_network():
    torch = pytest.importorskip("torch")
    import keras

    from benchmarks.torch_vit import PlainTorchViT
    from keras_tips import TIPSVisionEncoder
    from keras_tips.conversion.official_checkpoint import export_official_state
    from keras_tips.conversion.official_checkpoint import vision_weight_map

    keras.utils.set_random_seed(0)
    size = dict(hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64)
    encoder = TIPSVisionEncoder(**size, position_grid_size=4, layer_scale_init_value=0.5)
    encoder.build((None, 56, 56, 3))
    state = export_official_state(vision_weight_map(encoder))
    peer = PlainTorchViT(**size, image_size=56).eval()
    peer.load_official_state(state)
    images = np.random.default_rng(1).random((2, 56, 56, 3), dtype="float32")
    expected = encoder(images)
    with torch.inference_mode():
        tokens = peer(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(tokens[:, 0], keras.ops.convert_to_numpy(expected["cls_1"]), atol=1e-5)
    np.testing.assert_allclose(tokens[:, 1], keras.ops.convert_to_numpy(expected["cls_2"]), atol=1e-5)
    np.testing.assert_allclose(tokens[:, 2:], keras.ops.convert_to_numpy(expected["patches"]), atol=1e-5)


def _case(size, side, batch, rates):
    return {"size": size, "image_side": side, "batch": batch, "rounds": len(rates["keras_tips"]), "rates": rates}


def test_image_encoder_report_gives_per_round_median_ratios():
    results = [
        {"backend": "jax", "cases": [_case("S/14", 224, 8, {"keras_tips": [20.0, 30.0, 40.0], "dinov2": [10.0, 10.0, 40.0]})]},
        {"backend": "torch", "cases": [_case("S/14", 224, 8, {
            "keras_tips": [30.0, 30.0, 30.0], "dinov2": [15.0, 15.0, 15.0],
            "plain_torch": [20.0, 20.0, 20.0], "keras_tips_keras_ops": [10.0, 10.0, 10.0]})]},
        {"backend": "tensorflow", "error": "exit code 1: boom"},
    ]
    markdown = image_encoder.report(results, quick=True)
    # JAX: per-round ratios 2, 3, 1 -> median 2; against plain PyTorch 30 / 20.
    assert "| jax | 30.0 | 10.0 | (20.0) | 2.00× | 1.50× | 3 |" in markdown
    assert "| torch | 30.0 | 15.0 | 20.0 | 2.00× | 1.50× | 3 |" in markdown
    assert "| tensorflow | n/a |" in markdown
    assert "| S/14, 224 px, batch 8 | 10.0 | 30.0 | 3.00× |" in markdown
    assert "tensorflow: failed: `exit code 1: boom`" in markdown


def test_train_step_flops_count_the_trained_path_three_times():
    recipe = train_step.tiny_recipe()
    shape = train_step.batch_shape(recipe, vocabulary_size=100)
    flops = train_step.train_step_flops(recipe, shape)
    assert flops["total"] == 3 * flops["student"] + flops["teacher"]
    # The student runs the global crop twice (masked and unmasked) and the
    # local crops; the teacher only the global crop.
    vision = recipe.model.vision
    one_crop = train_step._tower_flops(
        shape.num_patches + 2,
        vision["hidden_dim"],
        vision["num_layers"],
        vision["intermediate_dim"],
        shape.num_patches,
        14 * 14 * 3,
    )
    assert flops["student"] > 2 * one_crop > flops["teacher"] > one_crop


def test_benchmarks_measure_the_recipe():
    """The train step and the pipeline benchmarks read their sizes from
    `recipes/tiny_shapes.py`, overrides included."""
    from benchmarks import data_pipeline

    recipe = train_step.tiny_recipe("mixed_bfloat16")
    assert recipe.model.dtype == "mixed_bfloat16"
    shape = train_step.batch_shape(recipe, vocabulary_size=100)
    pipeline = recipe.data.pipeline
    assert (shape.batch_size, shape.global_size, shape.local_count, shape.local_size) == (
        pipeline.batch_size, recipe.data.image_size, pipeline.local_crop_count, pipeline.local_image_size
    )
    assert shape.mask is pipeline.mask
    assert shape.sequence_length == recipe.data.sequence_length
    batch = train_step.random_batch(shape)
    assert batch["patch_mask"].shape == (shape.batch_size, shape.num_patches)
    assert batch["web_token_ids"].shape == (shape.batch_size, recipe.data.sequence_length)
    # Whole images are masked or not (mask.probability), at mask.ratio.
    counts = set(batch["patch_mask"].sum(axis=1).tolist())
    assert counts <= {0, round(pipeline.mask.ratio * shape.num_patches)}
    larger = common.tiny_shapes_recipe(["data.image_size=112", "data.pipeline.batch_size=8"])
    assert "batch 8, global 112 px" in data_pipeline.describe(larger)
    assert "of the 64 patches" in data_pipeline.describe(larger)


def test_run_all_header_names_machine_and_versions():
    text = "\n".join(run_all.header(False, ["jax"], 90.0))
    assert "logical cores" in text and "keras " in text and "1.5 min" in text


def test_device_peaks_are_looked_up_by_name():
    assert train_step.device_peak_flops("NVIDIA H100 80GB HBM3")[0] == 989e12
    assert train_step.device_peak_flops("NVIDIA H100 PCIe")[0] == 756e12
    assert train_step.device_peak_flops("NVIDIA H200")[0] == 989e12
    assert train_step.device_peak_flops("NVIDIA A100-SXM4-80GB")[0] == 312e12
    assert train_step.device_peak_flops("cpu") == (None, "unknown (pass --peak-tflops)")
    assert train_step.device_peak_flops("cpu", 2.0)[0] == 2e12


def _accelerator_result(remat, batch, rates):
    return {"device_kind": "NVIDIA H200", "recipe": "tips_b14_webli", "dtype": "mixed_bfloat16",
            "remat": remat, "per_device_batch": batch, "rates": rates, "warmup_seconds": 61.0,
            "flops_per_image": {"total": 1e11}, "peak_bytes_in_use": 70e9}


def test_accelerator_report_gives_mfu_against_the_device_peak():
    results = [
        _accelerator_result(False, 128, [3000.0, 3956.0, 4000.0]),
        {"remat": True, "per_device_batch": 256, "error": "exit code 1: ...RESOURCE_EXHAUSTED: Out of memory"},
    ]
    markdown = train_step.accelerator_report(results)
    assert "Device: NVIDIA H200; peak used for MFU: 989 TFLOP/s (H200 bf16 dense)." in markdown
    # 3956 images/s x 0.1 TFLOP / 989 TFLOP/s = 40.0 %; 128 / 3956 s = 32 ms.
    assert "| off | 128 | 3956.0 | 32 | 40.0 % | 70.0 | compile + warm-up 61 s |" in markdown
    assert "| on | 256 | n/a | n/a | n/a | n/a | failed: out of device memory |" in markdown


@pytest.mark.slow
def test_accelerator_path_runs_on_the_cpu_at_tiny_sizes(tmp_path):
    """The code path of `--accelerator` (bf16, remat on and off, a worker a
    batch), on JAX's CPU device with the tiny recipe."""
    import os
    import subprocess
    import sys

    output = tmp_path / "accelerator.md"
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (common.REPOSITORY_ROOT, env.get("PYTHONPATH")) if p)
    command = [sys.executable, os.path.join(common.REPOSITORY_ROOT, "benchmarks", "train_step.py"),
               "--accelerator", "--quick", "--recipe", common.TINY_SHAPES_RECIPE,
               "--batches", "2", "--peak-tflops", "0.5", "--output", str(output)]
    for item in ("model.dtype='mixed_bfloat16'", "model.vision.num_layers=1", "model.text.num_layers=1"):
        command += ["--set", item]
    result = subprocess.run(command, cwd=common.REPOSITORY_ROOT, env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    markdown = output.read_text()
    assert "Device: cpu; peak used for MFU: 0.5 TFLOP/s (given)." in markdown
    assert "Recipe `tiny_shapes` (mixed_bfloat16)" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith(("| off |", "| on |"))]
    assert len(rows) == 2 and not any("failed" in row for row in rows), markdown
    for row in rows:
        rate = float(row.split("|")[3])
        assert rate > 0


def test_objective_options_report_gives_ratios_against_the_tips_arm():
    from benchmarks import objective_options

    def arm(peak, rate, values):
        return {"peak_bytes": peak, "flops_per_step": 2e9,
                "values_held": values, "images_per_second": rate}

    results = {"TIPS": arm(100 * 2**20, 10.0, 2e6),
               "heads-only": arm(80 * 2**20, 12.5, 1.5e6)}
    markdown = objective_options.report(results, objective_options.common.TINY_SHAPES_RECIPE, 8)
    assert markdown.startswith(objective_options.SECTION_BEGIN)
    assert markdown.endswith(objective_options.SECTION_END)
    assert "| heads-only | 80.0 | 0.80x | 2.00 | 1.50 | 12.5 | 1.25x |" in markdown
    assert "| TIPS | 100.0 | 1.00x | 2.00 | 2.00 | 10.0 | 1.00x |" in markdown


def test_shape_learning_trains_each_arm_and_reports_mean_and_spread():
    from benchmarks import shape_learning

    arms = {"official start": shape_learning.OFFICIAL_INPUT, "recipe": {}}
    results, recipe = shape_learning.measure(
        common.TINY_SHAPES_RECIPE, steps=3, seeds=2, num_train=64, num_test=32,
        arms=arms, progress=lambda message: None,
    )
    assert set(results) == set(arms)
    for accuracies in results.values():
        assert len(accuracies) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)
    markdown = shape_learning.report(
        {"a": [0.5, 0.7], "b": [0.2, 0.2]}, recipe, common.TINY_SHAPES_RECIPE, 3
    )
    assert markdown.startswith(shape_learning.SECTION_BEGIN)
    assert "| a | 0.600 | 0.100 | 0.500, 0.700 |" in markdown
    assert "| b | 0.200 | 0.000 | 0.200, 0.200 |" in markdown
    assert "chance 0.167" in markdown


def test_segmentation_bounds_scores_every_feature_set_and_reports_them():
    from benchmarks import segmentation_bounds

    small = ("evaluation.num_train=8", "evaluation.num_test=8",
             "evaluation.probe_epochs=1", "data.num_examples=16")
    recipe = common.tiny_shapes_recipe(small).resolve()
    pretrained = segmentation_bounds.random_tower(recipe, seed=1)
    results, recipe, steps = segmentation_bounds.measure(
        common.TINY_SHAPES_RECIPE, pretrained, steps=2, overrides=small,
        progress=lambda message: None,
    )
    assert steps == 2
    for name in segmentation_bounds.FEATURE_SETS:
        scores = results[name]
        assert 0.0 <= scores["miou"] <= 1.0
        assert scores["interior_patches"] + scores["edge_patches"] > 0
    assert 0.0 < results["trivial"] < 1.0
    markdown = segmentation_bounds.report(
        results, recipe, common.TINY_SHAPES_RECIPE,
        f"{common.REPOSITORY_ROOT}/runs/demo/preset", steps,
    )
    assert markdown.startswith(segmentation_bounds.SECTION_BEGIN)
    assert markdown.endswith(segmentation_bounds.SECTION_END)
    assert "--preset runs/demo/preset`" in markdown
    assert f"| pretrained | {results['pretrained']['miou']:.3f} |" in markdown
    assert "trained for 2 steps" in markdown


def test_segmentation_bounds_patch_positions_split_interior_from_edge():
    from benchmarks import segmentation_bounds

    mask = np.zeros((1, 4, 4), np.int64)
    mask[0, :2, :2] = 3  # the top-left 2x2 patch wholly on the object
    mask[0, :2, 2] = 3  # half of the next patch: neither interior nor edge
    mask[0, 2:, :2] = 1
    mask[0, 3, 1] = 0  # three quarters of the bottom-left patch: edge
    positions = segmentation_bounds.patch_positions(mask, 2)
    np.testing.assert_array_equal(positions["interior"][0], [[True, False], [False, False]])
    np.testing.assert_array_equal(positions["edge"][0], [[False, False], [True, False]])


def test_segmentation_bounds_appends_the_cls_token_to_every_patch():
    from benchmarks import segmentation_bounds

    patches = np.arange(2 * 2 * 2 * 3, dtype="float32").reshape(2, 2, 2, 3)
    cls = np.array([[10.0, 20.0], [30.0, 40.0]], "float32")
    joined = segmentation_bounds.with_cls_appended({"patches": patches, "cls_1": cls})["patches"]
    assert joined.shape == (2, 2, 2, 5)
    np.testing.assert_array_equal(joined[..., :3], patches)
    np.testing.assert_array_equal(joined[1, 1, 0, 3:], cls[1])
