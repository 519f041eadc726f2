"""The ablation driver: arms, seeds, resuming, mean ± std, README table."""

import json
import math
import os

import pytest

from keras_tips.training import ablation
from keras_tips.training.recipe import load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "recipes", "tiny_shapes.py")
TWO_STEPS = [
    "model.vision.num_layers=1",
    "model.text.num_layers=1",
    "objective.num_prototypes=32",
    "objective.head_hidden_dim=16",
    "objective.head_bottleneck_dim=8",
    "objective.self_distillation_start_step=0",
    "data.num_examples=32",
    "data.pipeline.batch_size=4",
    "optimizer.warmup_steps=0",
    "train.total_steps=2",
    "train.steps_per_checkpoint=2",
]


def test_arms_are_cumulative_and_leave_the_base_alone():
    base = load_recipe(TINY)
    variants = ablation.ablation_recipes(base)
    assert list(variants) == ["clip_web", "+synthetic", "+distill", "+mask (TIPS)"]
    flags = [
        (r.objective.use_synthetic_captions, r.objective.distill_weight > 0, r.objective.mask_weight > 0)
        for r in variants.values()
    ]
    assert flags == [(False, False, False), (True, False, False), (True, True, False), (True, True, True)]
    assert base.objective.distill_weight > 0 and base.name == "tiny_shapes"
    with pytest.raises(ValueError, match="unknown objective field 'nope'"):
        ablation.ablation_recipes(base, {"bad": {"nope": 1}})


def test_summarize_and_table():
    raw = {"runs": {
        "a": {"0": {"segmentation_probe/miou": 0.2, "depth_probe/rmse": 0.3},
              "1": {"segmentation_probe/miou": 0.4, "depth_probe/rmse": float("nan")}},
        "b": {"0": {"segmentation_probe/miou": 0.5}},
    }}
    summary = ablation.summarize(raw)
    assert summary["a"]["segmentation_probe/miou"]["mean"] == pytest.approx(0.3)
    assert summary["a"]["segmentation_probe/miou"]["std"] == pytest.approx(math.sqrt(0.02))
    # A non-finite value is left out of its mean, not propagated.
    assert summary["a"]["depth_probe/rmse"] == {"mean": 0.3, "std": 0.0, "n": 1}
    table = ablation.summary_table(summary)
    assert "| metric | a | b |" in table
    assert "| segmentation probe mIoU (pixels) ↑ | 0.300 ± 0.141 | 0.500 ± 0.000 |" in table
    assert "| depth probe RMSE ↓ | 0.300 ± 0.000 |  |" in table
    assert "zero-shot shape" not in table  # no arm has it


def test_readme_section_is_replaced_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{ablation.README_BEGIN}\nold table\n{ablation.README_END}\noutro\n")
    ablation.write_readme_section(str(readme), "| new | table |")
    assert readme.read_text() == (
        f"intro\n{ablation.README_BEGIN}\n| new | table |\n{ablation.README_END}\noutro\n"
    )
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="marker"):
        ablation.write_readme_section(str(readme), "x")
    assert readme.read_text() == "no markers\n"


@pytest.mark.slow
def test_run_ablation_trains_each_arm_and_seed_once(tmp_path):
    base = load_recipe(TINY, TWO_STEPS)
    arms = {k: ablation.ABLATION_ARMS[k] for k in ("clip_web", "+mask (TIPS)")}
    seen = []

    def evaluate(recipe, preset_dir):
        assert os.path.isfile(os.path.join(preset_dir, "config.json"))
        seen.append((recipe.name, recipe.train.seed))
        return {"seed": float(recipe.train.seed),
                "mask_weight": float(recipe.objective.mask_weight)}

    raw = ablation.run_ablation(base, str(tmp_path), seeds=(0, 1), arms=arms,
                                evaluate=evaluate, log=lambda line: None)
    assert seen == [("tiny_shapes/clip_web", 0), ("tiny_shapes/clip_web", 1),
                    ("tiny_shapes/+mask (TIPS)", 0), ("tiny_shapes/+mask (TIPS)", 1)]
    run = raw["runs"]["+mask (TIPS)"]["1"]
    assert run["seed"] == 1.0 and run["mask_weight"] == 2.0
    # The last logged training metrics come along.
    assert run["train/distill"] > 0 and "train/mask_teacher_entropy" in run
    assert raw["runs"]["clip_web"]["0"]["train/distill"] == 0.0
    assert json.loads((tmp_path / ablation.RESULTS_FILE).read_text()) == raw
    # Run again: nothing is retrained or re-evaluated.
    again = ablation.run_ablation(base, str(tmp_path), seeds=(0, 1), arms=arms,
                                  evaluate=evaluate, log=lambda line: None)
    assert len(seen) == 4 and again == raw
