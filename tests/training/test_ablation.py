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
    variants = ablation.ablation_recipes(base, ablation.TIPS_ARMS)
    assert list(variants) == ["clip_web", "+synthetic", "+distill", "+mask (TIPS)"]
    flags = [
        (r.objective.use_synthetic_captions, r.objective.distill_weight > 0, r.objective.mask_weight > 0)
        for r in variants.values()
    ]
    assert flags == [(False, False, False), (True, False, False), (True, True, False), (True, True, True)]
    assert variants["+distill"].name == "tiny_shapes/+distill"
    assert base.objective.distill_weight > 0 and base.name == "tiny_shapes"
    # The TIPS arms are TIPS whatever TIPSv2 options the base uses.
    v2_base = load_recipe(TINY, ["objective.mask_loss_tokens='all'", "objective.teacher='heads_only'",
                                 "data.multi_granularity_captions=True"])
    for recipe in ablation.ablation_recipes(v2_base, ablation.TIPS_ARMS).values():
        assert (recipe.objective.mask_loss_tokens, recipe.objective.teacher,
                recipe.data.multi_granularity_captions) == ("masked", "ema", False)
    with pytest.raises(ValueError, match="Ablation arm .bad.: .*patch_size"):
        ablation.ablation_recipes(base, {"bad": ("data.image_size=57",)})


def test_tipsv2_arms_extend_the_full_objective():
    arms = ablation.ABLATION_ARMS
    assert list(arms)[:4] == list(ablation.TIPS_ARMS)
    full = set(arms["+mask (TIPS)"])
    assert set(arms["+iBOT++"]) == full - {"objective.mask_loss_tokens='masked'"} | {
        "objective.mask_loss_tokens='all'"}
    assert set(arms["+multi-granularity captions"]) == set(arms["+iBOT++"]) - {
        "data.multi_granularity_captions=False"} | {"data.multi_granularity_captions=True"}
    assert set(arms["+heads-only EMA (TIPSv2)"]) == set(arms["+multi-granularity captions"]) - {
        "objective.teacher='ema'"} | {"objective.teacher='heads_only'"}
    variants = ablation.ablation_recipes(load_recipe(TINY), arms)
    assert [(r.objective.mask_loss_tokens, r.data.multi_granularity_captions, r.objective.teacher)
            for r in variants.values()][3:] == [
        ("masked", False, "ema"), ("all", False, "ema"), ("all", True, "ema"),
        ("all", True, "heads_only")]


def test_an_arm_with_a_field_the_schema_lacks_is_refused_or_skipped_on_request(tmp_path):
    base = load_recipe(TINY)
    arms = {
        "clip_web": ablation.TIPS_ARMS["clip_web"],
        "future": ("objective.mask_weight=1.0", "objective.not_a_field=1", "train.nope.deeper=2"),
        "encoder": ("model.vision.new_argument=1",),  # encoder arguments are open
    }
    assert ablation.unavailable_arms(base, arms) == {
        "future": ["objective.not_a_field", "train.nope.deeper"]
    }
    with pytest.raises(ValueError, match="'future' sets objective.not_a_field, train.nope.deeper"):
        ablation.ablation_recipes(base, arms)
    with pytest.raises(ValueError, match="objective.not_a_field"):
        ablation.run_ablation(base, str(tmp_path), seeds=(0,), arms=arms,
                              evaluate=None, log=lambda line: None)
    assert not os.listdir(tmp_path)  # refused before anything ran

    lines = []
    raw = ablation.run_ablation(
        base, str(tmp_path), seeds=(0,), arms={"future": arms["future"]},
        log=lines.append, skip_unavailable=True,
    )
    assert raw["runs"] == {}
    assert raw["skipped"] == {
        "future": "the recipe schema has no field objective.not_a_field, train.nope.deeper"
    }
    assert lines == [f"Skipping arm 'future': {raw['skipped']['future']}."]


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


def test_metrics_of_terms_left_out_are_dropped():
    logged = {
        "zero_shot/cls_1/top1": 0.4, "train/contrastive_web": 2.0,
        "train/contrastive_synthetic": 0.0, "train/accuracy_synthetic": 0.0,
        "train/temperature_synthetic": 0.07, "train/distill": 0.0,
        "train/distill_teacher_entropy": 0.0, "train/mask": 0.0,
        "train/mask_teacher_entropy": 0.0, "train/koleo": 0.0,
    }
    variants = ablation.ablation_recipes(load_recipe(TINY), ablation.TIPS_ARMS)
    kept = {arm: set(ablation.without_terms_left_out(recipe, logged))
            for arm, recipe in variants.items()}
    assert kept["clip_web"] == {"zero_shot/cls_1/top1", "train/contrastive_web"}
    assert kept["+synthetic"] == kept["clip_web"] | {
        "train/contrastive_synthetic", "train/accuracy_synthetic",
        "train/temperature_synthetic"}
    assert kept["+distill"] == kept["+synthetic"] | {
        "train/distill", "train/distill_teacher_entropy"}
    # The tiny recipe has no KoLeo term: its zero stays out in every arm.
    assert kept["+mask (TIPS)"] == set(logged) - {"train/koleo"}


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
    # The terms clip_web leaves out are not reported as zeros.
    clip = raw["runs"]["clip_web"]["0"]
    assert clip["train/contrastive_web"] > 0
    assert not [k for k in clip if k.startswith(("train/distill", "train/mask",
                                                 "train/contrastive_synthetic"))]
    assert raw["schedule"] == {"total_steps": 2, "batch_size": base.data.pipeline.batch_size,
                               "image_size": base.data.image_size}
    assert json.loads((tmp_path / ablation.RESULTS_FILE).read_text()) == raw
    # Run again: nothing is retrained or re-evaluated.
    again = ablation.run_ablation(base, str(tmp_path), seeds=(0, 1), arms=arms,
                                  evaluate=evaluate, log=lambda line: None)
    assert len(seen) == 4 and again == raw


def _run_script(monkeypatch, *args):
    from keras_tips.training import ablation_table

    ablation_table.main(list(args))


def test_script_writes_the_readme_section_from_ablation_json(tmp_path, monkeypatch, capsys):
    raw = {
        "recipe": "tiny_shapes", "seeds": [0, 1],
        "schedule": {"total_steps": 600, "batch_size": 32, "image_size": 56},
        "runs": {
            "clip_web": {"0": {"segmentation_probe/miou": 0.2, "depth_probe/rmse": 0.30},
                         "1": {"segmentation_probe/miou": 0.4, "depth_probe/rmse": 0.28}},
            "+mask (TIPS)": {"0": {"segmentation_probe/miou": 0.6, "depth_probe/rmse": 0.31},
                             "1": {"segmentation_probe/miou": 0.7, "depth_probe/rmse": 0.33}},
        },
        "skipped": {"+iBOT++": "the recipe schema has no field objective.mask_loss_tokens"},
    }
    results = tmp_path / "ablation.json"
    results.write_text(json.dumps(raw))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n{ablation.README_BEGIN}\nstale numbers\n{ablation.README_END}\nrest\n")
    _run_script(monkeypatch, str(results), str(readme))
    text = readme.read_text()
    assert text.startswith(
        f"# Title\n{ablation.README_BEGIN}\nEach run: the `tiny_shapes` recipe with the "
        "arm's objective, 600 steps of batch 32 at 56 px.\n\n| metric | clip_web | +mask (TIPS) |"
    )
    assert text.endswith(f"{ablation.README_END}\nrest\n")
    assert "stale numbers" not in text
    assert "| segmentation probe mIoU (pixels) ↑ | 0.300 ± 0.141 | 0.650 ± 0.071 |" in text
    assert "| depth probe RMSE ↓ | 0.290 ± 0.014 | 0.320 ± 0.014 |" in text
    assert "over 2 training seeds" in text
    assert "- segmentation probe mIoU (pixels): improves at every arm, as in the paper." in text
    assert ("- depth probe RMSE: not ordered as in the paper (no improvement at "
            "+mask (TIPS) 0.320 vs clip_web 0.290).") in text
    assert ("- Arm +iBOT++ not run: the recipe schema has no field "
            "objective.mask_loss_tokens.") in text
    assert "Wrote the ablation section" in capsys.readouterr().out

    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"runs": {}}))
    with pytest.raises(SystemExit, match="no finished runs"):
        _run_script(monkeypatch, str(empty), str(readme))
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="marker"):
        _run_script(monkeypatch, str(results), str(readme))
    assert readme.read_text() == "no markers\n"


def test_the_tipsv2_arm_trains_with_every_v2_option(tmp_path):
    base = load_recipe(TINY, TWO_STEPS)
    name = "+heads-only EMA (TIPSv2)"
    seen = []

    def evaluate(recipe, preset_dir):
        assert os.path.isfile(os.path.join(preset_dir, "config.json"))
        seen.append(recipe)
        return {"zero_shot_segmentation/miou": 0.0}

    raw = ablation.run_ablation(base, str(tmp_path), seeds=(0,),
                                arms={name: ablation.ABLATION_ARMS[name]},
                                evaluate=evaluate, log=lambda line: None)
    (recipe,) = seen
    assert recipe.objective.mask_loss_tokens == "all"
    assert recipe.objective.teacher == "heads_only"
    assert recipe.data.multi_granularity_captions is True
    run = raw["runs"][name]["0"]
    assert run["train/mask"] > 0 and run["train/distill"] > 0


def test_readme_ablation_section_is_the_stored_run():
    """The README's table is `ablation_markdown` of the ablation.json kept in
    benchmarks/, not numbers copied by hand."""
    with open(os.path.join(ROOT, "benchmarks", "ablation_tiny_shapes.json"), encoding="utf-8") as f:
        raw = json.load(f)
    assert sorted(raw["runs"]) == sorted(ablation.ABLATION_ARMS)
    assert all(len(by_seed) == 3 for by_seed in raw["runs"].values())
    text = ablation.check_readme_section(os.path.join(ROOT, "README.md"))
    section = text[text.index(ablation.README_BEGIN) + len(ablation.README_BEGIN):
                   text.index(ablation.README_END)]
    assert section.strip() == ablation.ablation_markdown(raw).strip()
