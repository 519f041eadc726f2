"""The memory plan compiles the recipe's train step and its table adds up.

No memory size is asserted: the slow tests check that the plan of the tiny
recipe compiles (one device; model parallel on two virtual devices, with
rematerialisation) and that its numbers move the way a batch moves them.
"""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import memory_plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "recipes", "tiny_shapes.py")
GB = memory_plan.GB


def test_largest_fitting_batch_fits_a_line():
    # 2 GB + 0.25 GB a batch element.
    points = [(32, 10 * GB), (128, 34 * GB)]
    batch, (intercept, slope) = memory_plan.largest_fitting_batch(points, 80 * GB)
    assert intercept == pytest.approx(2 * GB) and slope == pytest.approx(0.25 * GB)
    assert batch == 312  # (80 - 2) / 0.25, a multiple of 8.
    assert memory_plan.largest_fitting_batch(points, 3 * GB)[0] == 0
    with pytest.raises(ValueError, match="does not grow"):
        memory_plan.largest_fitting_batch([(8, 5 * GB), (16, 5 * GB)], 80 * GB)


def _plan(batch, peak):
    return {"peak_bytes": peak, "flops_per_step": 2e12 * batch,
            "parameters": {"trainable": 240e6}}


def test_table_reports_the_compiled_numbers_and_the_verification(tmp_path):
    row = {"model": "B/14", "remat": False, "distribution": "data_parallel",
           "plans": {32: _plan(32, 10 * GB), 128: _plan(128, 34 * GB)},
           "budgets": {80: {"predicted": 312, 312: 80 * GB, 320: 82 * GB, "verified": True},
                       141: {"predicted": 552, 552: 140 * GB, 560: 140.5 * GB, "verified": False}}}
    failed = {"model": "g/14", "remat": True, "distribution": "model_parallel:4",
              "plans": {}, "budgets": {}, "error": "timed out after 60 s"}
    markdown = memory_plan.table_markdown([row, failed], 600)
    assert "| B/14 | data_parallel | off | 240 M | 10.0 | 34.0 | 256.0 | 312 ✓ | 80.0 / 82.0 | 552 (prediction off) | 140.0 / 140.5 |" in markdown
    assert "| g/14 | model_parallel:4 | on | not measured: timed out after 60 s |" in markdown
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nbefore\n")
    memory_plan.write_section(str(path), markdown)
    memory_plan.write_section(str(path), markdown.replace("312 ✓", "304 ✓"))
    text = path.read_text()
    assert text.startswith("# Results\n\nbefore\n")
    assert text.count(memory_plan.SECTION_BEGIN) == 1 and "304 ✓" in text and "312 ✓" not in text


def test_model_parallel_size_is_checked_before_jax_starts():
    assert memory_plan.device_count_for("model_parallel:4") == 4
    assert memory_plan.device_count_for("data_parallel") == 1
    assert memory_plan.device_count_for("data_parallel", 2) == 2
    with pytest.raises(ValueError, match="positive int"):
        memory_plan.device_count_for("model_parallel:x")


def _run(tmp_path, name, *arguments):
    output = tmp_path / f"{name}.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    sets = ["model.vision.num_layers=1", "model.text.num_layers=1"]
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "memory_plan.py"),
               "--recipe", TINY, "--json", str(output), *arguments]
    for item in sets:
        command += ["--set", item]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(output) as f:
        return json.load(f)


@pytest.mark.slow
def test_plan_of_the_tiny_recipe_grows_with_the_batch(tmp_path):
    small = _run(tmp_path, "small", "--per-device-batch", "2")
    large = _run(tmp_path, "large", "--per-device-batch", "8")
    for plan in (small, large):
        memory = plan["memory_analysis"]
        assert plan["peak_bytes"] == (
            memory["argument_size_in_bytes"] + memory["output_size_in_bytes"]
            + memory["temp_size_in_bytes"] - memory["alias_size_in_bytes"]
        )
        # The donated state is aliased: all of it (4 bytes a value; the
        # metrics' few values on top).
        assert memory["alias_size_in_bytes"] >= 4 * sum(plan["parameters"].values())
    assert large["global_batch"] == 8 and large["devices"] == 1
    assert large["peak_bytes"] > small["peak_bytes"]
    # Four times the batch: about four times the FLOPs, in XLA's count (less
    # the optimizer's fixed share) and in the analytic one (more the
    # batch x batch contrastive logits).
    xla = large["flops_per_step"] / small["flops_per_step"]
    analytic = large["analytic_model_flops_per_step"] / small["analytic_model_flops_per_step"]
    assert 3 < xla < 4.5 and 3.9 < analytic < 4.5, (xla, analytic)


@pytest.mark.slow
def test_model_parallel_plan_with_remat_is_per_device(tmp_path):
    plan = _run(tmp_path, "mp", "--per-device-batch", "2",
                "--distribution", "model_parallel:2", "--remat")
    assert plan["devices"] == 2 and plan["global_batch"] == 4
    assert plan["distribution"] == "model_parallel:2" and plan["remat"]
    # Weights split over the model axis: one device holds less than the
    # whole donated state (weights, teacher and moments, 4 bytes a value).
    whole = 4 * sum(plan["parameters"].values())
    assert plan["memory_analysis"]["alias_size_in_bytes"] < whole


def test_table_keeps_the_compiled_point_of_a_row_that_cannot_be_fitted():
    row = {"model": "B/14", "remat": True, "distribution": "data_parallel",
           "plans": {32: {"error": "not compiled"}, 128: _plan(128, 30 * GB)},
           "budgets": {}, "error": "not compiled"}
    markdown = memory_plan.table_markdown([row], 60, not_measured=["L/14"])
    assert "| B/14 | data_parallel | on | 240 M | not compiled | 30.0 | 256.0 | not measured (needs 2 batches) |" in markdown
    assert "per-device batch of 128 (80 GB is the budget it must fit): B/14 remat on: 30.0 GB." in markdown
    assert "Not measured yet: L/14" in markdown
