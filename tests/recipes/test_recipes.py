"""Recipes load, validate, override, and run end to end at reduced size."""

import ast
import json
import os
import subprocess
import sys

import keras
import pytest

from keras_tips.training.ablation import TIPS_ARMS
from keras_tips.training.ablation import ablation_recipes
from keras_tips.training.recipe import apply_overrides
from keras_tips.training.recipe import load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "recipes", "tiny_shapes.py")
B14 = os.path.join(ROOT, "recipes", "tips_b14_webli.py")
V2_B14 = os.path.join(ROOT, "recipes", "tips_v2_b14.py")

# A small model and data set: the demo recipe's structure at test size.
SMALL = [
    "model.vision.num_layers=1",
    "model.text.num_layers=1",
    "objective.num_prototypes=64",
    "objective.head_hidden_dim=32",
    "objective.head_bottleneck_dim=16",
    "objective.teacher_temperature_warmup_steps=0",
    "data.num_examples=64",
    "data.pipeline.batch_size=8",
    "optimizer.warmup_steps=0",
    "train.total_steps=6",
    "train.steps_per_checkpoint=3",
    "evaluation.num_train=40",
    "evaluation.num_test=30",
    "evaluation.probe_epochs=1",
]


def test_overrides_and_validation():
    recipe = load_recipe(TINY, ["train.total_steps=200", "data.pipeline.batch_size=16",
                                "objective.teacher_momentum=(0.9, 1.0)"])
    assert recipe.train.total_steps == 200
    assert recipe.data.pipeline.batch_size == 16
    assert recipe.objective.teacher_momentum == (0.9, 1.0)
    with pytest.raises(ValueError, match="Unknown recipe field 'train.nope'"):
        apply_overrides(recipe, ["train.nope=1"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(recipe, ["train.total_steps"])
    with pytest.raises(ValueError, match="must divide"):
        load_recipe(TINY, ["train.total_steps=250"])
    with pytest.raises(ValueError, match="needs data.path"):
        load_recipe(B14)
    with pytest.raises(FileNotFoundError):
        load_recipe("recipes/none.py")


def test_masked_contrastive_view_contradicts_a_contrastive_crop():
    files = ["data.path='x'", "data.tokenizer='y'"]
    with pytest.raises(ValueError, match="contrastive_crop=None"):
        load_recipe(B14, files + ["objective.contrastive_view='masked'"])
    recipe = load_recipe(B14, files + [
        "objective.contrastive_view='masked'",
        "data.pipeline.augmentation.contrastive_crop=None",
    ])
    assert recipe.data.pipeline.augmentation.contrastive_crop is None
    # Per-crop-kind settings are reachable with --set.
    recipe = load_recipe(B14, files + ["data.pipeline.augmentation.local_crop.solarize_probability=0.2"])
    assert recipe.data.pipeline.augmentation.local_crop.solarize_probability == 0.2
    assert recipe.data.pipeline.augmentation.global_crop.solarize_probability == 0.1


def docstring_table(path):
    """The `| what | value |` rows of a recipe file's docstring."""
    with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read()))
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and set(cells[0]) - set("-"):
            rows[cells[0]] = cells[1]
    return rows


def test_docstring_tables_say_what_the_recipes_set():
    recipe = load_recipe(TINY)
    rows = docstring_table(TINY)
    vision, text, pipeline = recipe.model.vision, recipe.model.text, recipe.data.pipeline
    objective = recipe.objective
    assert rows["model"] == (
        f"ViT/{vision['patch_size']}, {vision['hidden_dim']} wide, "
        f"{vision['num_layers']} blocks, {vision['num_heads']} heads"
    )
    assert rows["text tower"] == (
        f"{text['hidden_dim']} wide, {text['num_layers']} blocks, "
        f"{text['num_heads']} heads, {recipe.data.sequence_length} tokens"
    )
    grid = vision["position_grid_size"]
    assert recipe.data.max_objects == 1
    assert rows["data"] == (
        f"{recipe.data.num_examples:,} generated scenes of one large shape, "
        f"{recipe.data.image_size} px ({grid} x {grid} patches)"
    )
    assert rows["image input"] == (
        f"centred pixels (mean {vision['pixel_mean']}, std {vision['pixel_std']}), "
        f"{vision['position_initializer']} position start"
    )
    assert rows["crops"] == (
        f"1 global {pipeline.global_image_size} px, {pipeline.local_crop_count} "
        f"local {pipeline.local_image_size} px"
    )
    augmentation = pipeline.augmentation
    local = augmentation.local_crop
    assert augmentation.contrastive_crop is None
    assert augmentation.global_crop.scale == (1.0, 1.0)
    assert not augmentation.global_crop.photometric
    assert not local.color_jitter_probability and not local.grayscale_probability
    assert rows["augmentation"] == (
        f"global whole scene; local {local.scale[0]:.0%}-{local.scale[1]:.0%}, "
        f"blur {local.blur_probability}"
    ).replace("%-", "-").replace("%", " %")
    assert rows["masking"] == (
        f"{pipeline.mask.ratio:.0%} of the patches, {pipeline.mask.mode}, "
        f"{'half' if pipeline.mask.probability == 0.5 else 'all'} the images"
    ).replace("%", " %")
    assert rows["batch"] == str(pipeline.batch_size)
    assert rows["steps"] == (
        f"{recipe.train.total_steps:,} (checkpoint every {recipe.train.steps_per_checkpoint})"
    )
    assert rows["prototypes"] == (
        f"{objective.num_prototypes:,}, head {objective.head_hidden_dim} -> "
        f"{objective.head_bottleneck_dim}"
    )
    momentum = objective.teacher_momentum
    assert rows["teacher momentum"] == f"{momentum[0]} -> {momentum[1]} (cosine)"

    recipe = load_recipe(B14, ["data.path='x'", "data.tokenizer='y'"])
    rows = docstring_table(B14)
    vision, text, pipeline = recipe.model.vision, recipe.model.text, recipe.data.pipeline
    objective = recipe.objective
    assert rows["image tower"] == (
        f"ViT-B/{vision['patch_size']}, {vision['hidden_dim']} wide, "
        f"{vision['num_layers']} blocks, {vision['num_heads']} heads"
    )
    assert rows["text tower"] == (
        f"{text['hidden_dim']} wide, {text['num_layers']} blocks, "
        f"{text['num_heads']} heads, {recipe.data.sequence_length} tokens"
    )
    assert rows["global / local crops"] == (
        f"1 x {pipeline.global_image_size} px / {pipeline.local_crop_count} x "
        f"{pipeline.local_image_size} px"
    )
    contrastive = pipeline.augmentation.contrastive_crop
    assert rows["contrastive crop"] == (
        f"1 x {pipeline.global_image_size} px, {contrastive.scale[0]:.0%}-"
        f"{contrastive.scale[1]:.0%} of the image, flip, no colour"
    ).replace("%-", "-").replace("%", " %")
    assert not contrastive.photometric and contrastive.flip_probability > 0
    assert rows["masking"].startswith(f"{pipeline.mask.ratio:.0%}".replace("%", " %"))
    assert rows["steps"] == (
        f"{recipe.train.total_steps:,}, {recipe.optimizer.warmup_steps:,} warm-up, "
        f"checkpoint every {recipe.train.steps_per_checkpoint:,}"
    )
    assert rows["heads"] == (
        f"{objective.num_prototypes:,} prototypes, MLP {objective.head_hidden_dim:,}, "
        f"bottleneck {objective.head_bottleneck_dim}"
    )
    assert rows["teacher"] == (
        f"momentum {objective.teacher_momentum[0]} -> {objective.teacher_momentum[1]}, "
        f"temperature {objective.teacher_temperature[0]} -> {objective.teacher_temperature[1]}"
    )


def test_ablation_variants():
    variants = ablation_recipes(load_recipe(TINY), TIPS_ARMS)
    assert list(variants) == ["clip_web", "+synthetic", "+distill", "+mask (TIPS)"]
    flags = [
        (r.objective.use_synthetic_captions, r.objective.distill_weight > 0, r.objective.mask_weight > 0)
        for r in variants.values()
    ]
    assert flags == [(False, False, False), (True, False, False), (True, True, False), (True, True, True)]


def _cli(args, cwd, timeout=1200):
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "keras_tips.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_demo_runs_end_to_end_at_reduced_size(tmp_path):
    output = tmp_path / "demo"
    args = ["demo", "--output", str(output), "--recipe", TINY, "--num-test", "30"]
    for override in SMALL:
        args += ["--set", override]
    stdout = _cli(args, ROOT)
    assert "zero-shot colour:" in stdout
    table = (output / "results.md").read_text()
    assert "zero_shot/cls_1/top1" in table and "segmentation_probe/miou" in table
    results = json.loads((output / "results.json").read_text())
    assert 0.0 <= results["zero_shot/cls_1/top1"] <= 1.0
    assert 0.0 <= results["zero_shot_colour/cls_2/top1"] <= 1.0
    for picture in ("pca.png", "similarity.png", "zero_shot_segmentation.png", "curves.png"):
        assert (output / "pictures" / picture).stat().st_size > 1000, picture
    assert (output / "preset" / "model.weights.h5").exists()
    history = [json.loads(l) for l in (output / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == [3, 6]


def test_v2_recipe_sets_the_tips_v2_objective():
    recipe = load_recipe(V2_B14, ["data.path='x'", "data.tokenizer='y'"])
    objective, optimizer = recipe.objective, recipe.optimizer
    assert (objective.mask_loss_tokens, objective.teacher) == ("all", "heads_only")
    assert recipe.data.multi_granularity_captions is True
    # 75 % of the 16 x 16 patches of a 224 px crop.
    assert objective.max_masked_patches == 192
    assert recipe.model.vision["position_grid_size"] == 32
    rows = docstring_table(V2_B14)
    pipeline = recipe.data.pipeline
    assert rows["patch loss"] == (
        f"iBOT++: {objective.mask_loss_tokens} tokens, visible weight "
        f"{objective.visible_token_weight}"
    )
    assert rows["teacher"] == (
        f"heads only, momentum {objective.teacher_momentum[0]} -> "
        f"{objective.teacher_momentum[1]}"
    )
    assert rows["loss weights"] == (
        f"distill {objective.distill_weight}, patch {objective.mask_weight}"
    )
    assert rows["steps"] == (
        f"{recipe.train.total_steps:,}, {optimizer.warmup_steps:,} warm-up, "
        f"checkpoint every {recipe.train.steps_per_checkpoint:,}"
    )
    assert rows["frozen prototypes"] == f"first {optimizer.freeze_last_layer_steps:,} steps"
    assert rows["global / local crops"] == (
        f"1 x {pipeline.global_image_size} px / {pipeline.local_crop_count} x "
        f"{pipeline.local_image_size} px"
    )
    assert rows["heads"] == (
        f"{objective.num_prototypes:,} prototypes, MLP {objective.head_hidden_dim:,}, "
        f"bottleneck {objective.head_bottleneck_dim}"
    )
    # The v1 recipe keeps the v1 objective.
    v1 = load_recipe(B14, ["data.path='x'", "data.tokenizer='y'"]).objective
    assert (v1.mask_loss_tokens, v1.teacher) == ("masked", "ema")


@pytest.mark.parametrize("path", [B14, V2_B14])
def test_b14_recipe_smoke_at_reduced_size(tmp_path, path):
    """The paper-scale recipes' objective, optimizer, bf16 and data-parallel
    settings run for a few steps on tiny random data (sizes shrunk)."""
    from keras_tips.data.shapes import write_shapes_jsonl
    from keras_tips.training.loop import pretrain

    write_shapes_jsonl(str(tmp_path / "data"), num_examples=16, image_size=56)
    index = next(p for p in (tmp_path / "data").iterdir() if p.suffix == ".jsonl")
    recipe = load_recipe(path, [
        "data.source='jsonl'",
        f"data.path='{index}'",
        f"data.tokenizer='{ROOT}/tests/testdata/tips_tiny/tokenizer.model'",
        "data.sequence_length=16",
        "data.pipeline.batch_size=4",
        "data.image_size=56",
        "data.pipeline.local_crop_count=2",
        "data.pipeline.local_image_size=28",
        "data.pipeline.worker_count=0",
        "model.vision.hidden_dim=64",
        "model.vision.num_heads=2",
        "model.vision.num_layers=1",
        "model.vision.intermediate_dim=128",
        "model.text.hidden_dim=64",
        "model.text.num_heads=2",
        "model.text.num_layers=1",
        "model.text.intermediate_dim=128",
        "objective.num_prototypes=128",
        "objective.head_hidden_dim=64",
        "objective.head_bottleneck_dim=32",
        "optimizer.warmup_steps=1",
        "train.total_steps=2",
        "train.steps_per_checkpoint=1",
        "train.jit_compile='auto'",
    ])
    assert recipe.model.dtype == "mixed_bfloat16"
    assert recipe.data.pipeline.mask.mode == "block"
    # The crop, the position grid and the text length followed the sources.
    assert recipe.data.pipeline.global_image_size == 56
    if path == B14:
        assert recipe.model.vision["position_grid_size"] == 4
    assert recipe.model.text["max_sequence_length"] == 16
    pretrainer = pretrain(recipe, str(tmp_path / "run"), verbose=0)
    assert int(pretrainer.step_counter.numpy()) == 2
    assert (tmp_path / "run" / "preset" / "config.json").exists()
    # train.distribution applied to that run only.
    assert keras.distribution.distribution() is None
