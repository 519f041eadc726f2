"""One settings tree: each number set once, followed fields derived from
their source, contradictions refused, and the recipes build what they built
before their fields were derived."""

import copy
import dataclasses
import json
import os

import numpy as np
import pytest

from keras_tips.data.example_transform import PretrainingExampleTransform
from keras_tips.data.masking import block_patch_mask
from keras_tips.training import loop
from keras_tips.training.recipe import DataConfig
from keras_tips.training.recipe import PretrainRecipe
from keras_tips.training.recipe import apply_overrides
from keras_tips.training.recipe import load_recipe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "recipes", "tiny_shapes.py")
B14 = os.path.join(ROOT, "recipes", "tips_b14_webli.py")
# The b14 recipe reads shards with a SentencePiece model; neither is opened
# here (the classes that would are replaced by recorders).
B14_FILES = ["data.path='shards/*.array_record'", "data.tokenizer='tokenizer.model'"]
# What the loop built from each recipe at revision c7c062e, when every size
# was still written out by hand (the mask settings then were three flat
# PipelineConfig fields, stored here as today's `mask`).
BUILT_BEFORE = os.path.join(ROOT, "tests", "testdata", "recipes", "built_at_c7c062e.json")
# The tiny_shapes changes made on purpose since then, undone: the image
# tower's from-scratch input settings, the demo's one-object scenes with
# their short captions and longer schedule, and TIPSv2's patch loss on every
# token (recipes/tiny_shapes.py says why).
TINY_CHANGED_SINCE = [
    "objective.mask_loss_tokens='masked'",
    "model.vision.pixel_mean=0.0",
    "model.vision.pixel_std=1.0",
    "model.vision.position_initializer='truncated_normal'",
    "data.max_objects=4",
    "data.object_scale=1.0",
    "data.sequence_length=64",
    "train.total_steps=1200",
]
# Tower settings added since, whose defaults are the towers built then.
VISION_SETTINGS_ADDED = {
    "pixel_mean": 0.0, "pixel_std": 1.0, "position_initializer": "truncated_normal",
}


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _assert_contains(expected, actual, where):
    """Every captured entry is there with the same value (new fields may
    be added to the tree without changing what the recipes build)."""
    for key, value in expected.items():
        assert key in actual, f"{where}: {key} missing"
        if isinstance(value, dict) and isinstance(actual[key], dict):
            _assert_contains(value, actual[key], f"{where}.{key}")
        else:
            assert actual[key] == value, f"{where}.{key}: {actual[key]!r} != {value!r}"


def _per_crop_kind(flat):
    """The augmentation settings of c7c062e (one flat set shared by the crop
    kinds, a blur and solarize probability per kind) as today's
    per-crop-kind `AugmentationConfig` fields."""
    shared = {
        "aspect_ratio": flat["crop_aspect_ratio"],
        **{
            k: flat[k]
            for k in (
                "flip_probability", "color_jitter_probability", "brightness",
                "contrast", "saturation", "hue", "grayscale_probability",
                "blur_sigma", "solarize_threshold",
            )
        },
    }
    return {
        "swap_left_right_on_flip": flat["swap_left_right_on_flip"],
        **{
            f"{kind}_crop": dict(
                shared,
                scale=flat[f"{kind}_crop_scale"],
                blur_probability=flat[f"{kind}_blur_probability"],
                solarize_probability=flat[f"{kind}_solarize_probability"],
            )
            for kind in ("global", "local")
        },
    }


def built_by_the_loop(monkeypatch, recipe):
    """The arguments the loop's builders give every class they build from
    `recipe`. The classes are replaced by recorders, so nothing is
    allocated; the optimizer alone is real."""
    log = {}

    def recorder(name):
        class Recorder:
            def __init__(self, *args, **kwargs):
                log[name] = dict(kwargs, **{f"arg_{i}": a for i, a in enumerate(args)})
                self.tokenize_numpy = None

            def compile(self, optimizer, jit_compile):
                log["optimizer"] = optimizer
                log["jit_compile"] = jit_compile

            def image_text_source(self, **kwargs):
                log[f"{name}_records"] = kwargs
                return self

        return Recorder

    patches = {
        "keras_tips.models.tips_vision_encoder.TIPSVisionEncoder": "vision_encoder",
        "keras_tips.models.tips_text_encoder.TIPSTextEncoder": "text_encoder",
        "keras_tips.models.tips_backbone.TIPSBackbone": "backbone",
        "keras_tips.training.pretrainer.TIPSPretrainer": "pretrainer",
        "keras_tips.models.tips_tokenizer.TIPSTokenizer": "tokenizer",
        "keras_tips.data.shapes.ShapesDataset": "shapes_source",
        "keras_tips.data.sources.ArrayRecordImageTextSource": "array_record_source",
        "keras_tips.data.pipeline.PretrainingPipeline": "pipeline",
    }
    for target, name in patches.items():
        monkeypatch.setattr(target, recorder(name))
    monkeypatch.setattr(
        "keras_tips.data.vocabulary.shapes_vocabulary",
        lambda path, seed, **kwargs: log.setdefault(
            "vocabulary", dict(kwargs, path=path, seed=seed)
        ),
    )
    tokenizer = loop.build_tokenizer(recipe)
    loop.build_pipeline(recipe, tokenizer)
    loop.build_pretrainer(recipe, vocabulary_size=100)
    return log


@pytest.mark.parametrize("path, overrides", [(TINY, TINY_CHANGED_SINCE), (B14, B14_FILES)])
def test_recipes_build_what_they_built_before(monkeypatch, path, overrides):
    name = os.path.basename(path)[: -len(".py")]
    with open(BUILT_BEFORE, encoding="utf-8") as f:
        expected = json.load(f)[name]
    recipe = load_recipe(path, overrides)
    log = built_by_the_loop(monkeypatch, recipe)
    pipeline = log["pipeline"]["arg_1"]
    expected_pipeline = dict(expected["pipeline"])
    augmentation = _per_crop_kind(expected_pipeline.pop("augmentation"))
    # One shard per process is now the recipes' default (left unset, it is
    # this process's index of the process count): in one process, the
    # single shard 0 of 1 as before.
    assert (expected_pipeline.pop("shard_index"), expected_pipeline.pop("shard_count")) == (0, 1)
    assert (pipeline.shard_index, pipeline.shard_count) == (None, None)
    assert pipeline.shard() == (0, 1)
    _assert_contains(expected_pipeline, _plain(dataclasses.asdict(pipeline)), "pipeline")
    # The self-distillation crops are augmented as before; the b14 recipe's
    # captions are now paired with a crop of their own (tiny_shapes' with
    # the global crop, as before).
    _assert_contains(
        augmentation, _plain(dataclasses.asdict(pipeline.augmentation)), "augmentation"
    )
    contrastive = pipeline.augmentation.contrastive_crop
    if name == "tiny_shapes":
        assert contrastive is None
    else:
        assert contrastive.scale == (0.9, 1.0) and not contrastive.photometric
    _assert_contains(expected["optimizer"], _plain(log["optimizer"].get_config()), "optimizer")
    # The towers were built without the recipe's dtype then (a mixed_bfloat16
    # recipe trained float32 towers); now they get it, as the backbone does.
    for tower in ("vision_encoder", "text_encoder"):
        assert log[tower].pop("dtype") == recipe.model.dtype
    vision = {
        k: v for k, v in log["vision_encoder"].items()
        if k != "name" and not (k in VISION_SETTINGS_ADDED and v == VISION_SETTINGS_ADDED[k])
    }
    assert vision == expected["vision_encoder"]
    text = {k: v for k, v in log["text_encoder"].items() if k not in ("name", "vocabulary_size")}
    assert text == expected["text_encoder"]
    _assert_contains(expected["backbone"], log["backbone"], "backbone")
    pretrainer = {k: v for k, v in log["pretrainer"].items() if k != "arg_0"}
    _assert_contains(expected["pretrainer"], _plain(pretrainer), "pretrainer")
    assert log["tokenizer"]["sequence_length"] == expected["tokenizer_sequence_length"]
    # The exported preprocessor's size.
    assert recipe.data.image_size == expected["preprocessor_image_size"]
    _assert_contains(expected["train"], _plain(dataclasses.asdict(recipe.train)), "train")
    if "shapes_source" in expected:
        shapes = expected["shapes_source"]
        assert log["shapes_source"] == {
            "arg_0": "train",
            "arg_1": shapes["num_examples"],
            "arg_2": shapes["image_size"],
            "seed": shapes["seed"],
            "max_objects": shapes["max_objects"],
            # Recorded before scenes had a scale: 1.0 draws them as then.
            "object_scale": shapes.get("object_scale", 1.0),
        }
        # The full synthetic caption alone, as before captions had several
        # granularities.
        assert log["shapes_source_records"] == {"multi_granularity_captions": False}
        assert dataclasses.asdict(recipe.evaluation) == expected["evaluation"]


def test_sources_move_what_follows_them():
    recipe = load_recipe(TINY, [
        "data.image_size=112",
        "data.sequence_length=32",
        "train.total_steps=600",
        "train.seed=3",
        "model.vision.patch_size=8",
    ])
    assert recipe.data.pipeline.global_image_size == 112
    assert recipe.data.pipeline.patch_size == 8
    assert recipe.data.pipeline.patch_grid_size == 14
    assert recipe.model.vision["position_grid_size"] == 14
    assert recipe.evaluation.image_size == 112
    assert recipe.model.text["max_sequence_length"] == 32
    assert recipe.optimizer.total_steps == 600
    assert recipe.data.pipeline.seed == 3
    # 196 patches, half of them masked.
    assert recipe.objective.max_masked_patches == 98
    # The crop and the patch size change together (64 is no multiple of 14).
    recipe = load_recipe(TINY, ["data.image_size=64", "model.vision.patch_size=16"])
    assert recipe.data.pipeline.global_image_size == 64
    assert recipe.data.pipeline.patch_size == 16
    assert recipe.model.vision["position_grid_size"] == 4


@pytest.mark.parametrize(
    "override, source",
    [
        ("optimizer.total_steps=500", "train.total_steps=2400"),
        ("data.pipeline.global_image_size=112", "data.image_size=56"),
        ("data.pipeline.patch_size=8", "model.vision.patch_size=14"),
        ("data.pipeline.seed=1", "train.seed=0"),
        ("model.text.max_sequence_length=32", "data.sequence_length=16"),
    ],
)
def test_contradictory_overrides_are_refused(override, source):
    field = override.split("=")[0]
    with pytest.raises(ValueError) as error:
        load_recipe(TINY, [override])
    message = str(error.value)
    assert f"{override} contradicts {source}" in message
    assert f"Set {source.split('=')[0]} instead, or leave {field} unset" in message


def test_the_masked_patch_bound_follows_the_mask_settings():
    recipe = load_recipe(TINY)
    assert recipe.data.pipeline.mask.ratio == 0.5
    assert recipe.objective.max_masked_patches == 8  # of 16 patches
    apply_overrides(recipe, ["data.pipeline.mask.ratio=0.75"]).validate()
    assert recipe.objective.max_masked_patches == 12
    # No mask at all still gathers one (zero-weight) token.
    assert load_recipe(TINY, ["data.pipeline.mask.ratio=0.0"]).objective.max_masked_patches == 1
    with pytest.raises(ValueError, match=r"objective.max_masked_patches=5 contradicts round\(data.pipeline.mask.ratio"):
        load_recipe(TINY, ["objective.max_masked_patches=5"])


def test_agreeing_overrides_are_accepted():
    recipe = load_recipe(TINY, ["optimizer.total_steps=600", "train.total_steps=600"])
    assert recipe.optimizer.total_steps == 600
    assert loop_optimizer_total_steps(recipe) == 600
    recipe = load_recipe(TINY, ["optimizer.total_steps=2400"])
    assert recipe.optimizer.total_steps == 2400


def loop_optimizer_total_steps(recipe):
    from keras_tips.training.optimizers import build_optimizer

    config = build_optimizer(recipe.optimizer).get_config()
    assert config["weight_decay_steps"] == config["learning_rate"]["config"]["total_steps"]
    return config["weight_decay_steps"]


def test_fields_that_may_differ_on_purpose():
    recipe = load_recipe(TINY, ["model.vision.position_grid_size=8", "evaluation.image_size=112"])
    assert recipe.model.vision["position_grid_size"] == 8
    assert recipe.evaluation.image_size == 112
    assert recipe.data.pipeline.global_image_size == 56
    # Set on purpose, they stay when the source moves.
    apply_overrides(recipe, ["data.image_size=28"]).validate()
    assert recipe.model.vision["position_grid_size"] == 8
    assert recipe.evaluation.image_size == 112
    assert recipe.data.pipeline.global_image_size == 28
    with pytest.raises(ValueError, match=r"evaluation.image_size \(50\) must be a positive multiple"):
        load_recipe(TINY, ["evaluation.image_size=50"])
    with pytest.raises(ValueError, match="position_grid_size must be a positive int"):
        load_recipe(TINY, ["model.vision.position_grid_size=0"])


def test_sources_are_checked_before_anything_is_built():
    with pytest.raises(ValueError, match=r"data.image_size \(50\) must be a positive multiple of model.vision.patch_size \(14\)"):
        load_recipe(TINY, ["data.image_size=50"])
    with pytest.raises(ValueError, match="model.vision.patch_size must be set"):
        load_recipe(TINY, ["model.vision.patch_size=None"])
    with pytest.raises(ValueError, match="train.total_steps must be a positive int"):
        load_recipe(TINY, ["train.total_steps=0"])
    with pytest.raises(ValueError, match=r"Unknown data.pipeline field\(s\) \['mask_ratio'\]"):
        DataConfig(pipeline=dict(mask_ratio=0.5))


def test_a_loaded_recipe_follows_later_overrides_and_refuses_later_contradictions():
    recipe = load_recipe(TINY)
    apply_overrides(recipe, ["data.image_size=112", "train.total_steps=400"]).validate()
    assert recipe.data.pipeline.global_image_size == 112
    assert recipe.model.vision["position_grid_size"] == 8
    assert recipe.evaluation.image_size == 112
    assert recipe.optimizer.total_steps == 400
    # A copy (the ablation's variants) keeps following.
    variant = copy.deepcopy(recipe)
    variant.train.total_steps = 200
    assert variant.validate().optimizer.total_steps == 200
    # A followed field set after loading is checked like an override.
    variant.optimizer.total_steps = 7
    with pytest.raises(ValueError, match="optimizer.total_steps=7 contradicts train.total_steps=200"):
        variant.validate()
    # An override of both at once is explicit: the followed one is checked.
    with pytest.raises(ValueError, match="data.pipeline.global_image_size=112 contradicts data.image_size=56"):
        apply_overrides(recipe, ["data.image_size=56", "data.pipeline.global_image_size=112"]).validate()


def test_a_recipe_file_that_writes_a_followed_value_out_keeps_it_following(tmp_path):
    path = tmp_path / "written_out.py"
    path.write_text(
        "from keras_tips.training.recipe import PretrainRecipe\n\n"
        "def recipe():\n"
        "    r = PretrainRecipe()\n"
        "    r.model.vision['position_grid_size'] = 4\n"
        "    r.model.text['max_sequence_length'] = 64\n"
        "    return r\n"
    )
    recipe = load_recipe(str(path), ["data.image_size=112", "data.sequence_length=16"])
    assert recipe.model.vision["position_grid_size"] == 8
    assert recipe.model.text["max_sequence_length"] == 16


def test_the_mask_override_reaches_the_masker():
    recipe = load_recipe(TINY, [
        "data.pipeline.mask.mode='block'",
        "data.pipeline.mask.probability=1.0",
        "data.pipeline.mask.min_block_patches=3",
    ])
    mask = recipe.data.pipeline.mask
    assert (mask.ratio, mask.mode, mask.min_block_patches) == (0.5, "block", 3)
    masker = PretrainingExampleTransform(recipe.data.pipeline).masker
    assert masker.config is mask
    expected = block_patch_mask(4, 0.5, np.random.default_rng(0), min_block_patches=3)
    np.testing.assert_array_equal(masker(np.random.default_rng(0)), expected)


def test_default_recipe_resolves_and_the_optimizer_needs_its_length():
    from keras_tips.training.optimizers import OptimizerConfig
    from keras_tips.training.optimizers import build_optimizer

    recipe = PretrainRecipe().validate()
    assert recipe.optimizer.total_steps == recipe.train.total_steps
    assert recipe.data.pipeline.global_image_size == recipe.data.image_size
    with pytest.raises(ValueError, match="needs `total_steps`"):
        build_optimizer(OptimizerConfig())


def test_multi_granularity_captions_is_one_switch_of_the_shapes_source():
    from keras_tips.data.shapes import ShapesDataset

    recipe = load_recipe(TINY, ["data.num_examples=8"])
    assert recipe.data.multi_granularity_captions is False
    dataset = ShapesDataset(
        "train", 8, recipe.data.image_size, seed=recipe.data.seed,
        max_objects=recipe.data.max_objects, object_scale=recipe.data.object_scale,
    )
    assert loop.build_source(recipe.data)[2]["synthetic_caption"] == dataset[2]["synthetic_caption"]

    recipe = load_recipe(TINY, ["data.num_examples=8", "data.multi_granularity_captions=true"])
    assert recipe.data.multi_granularity_captions is True
    record = loop.build_source(recipe.data)[2]
    assert record["synthetic_caption"] == list(dataset[2]["synthetic_captions"])
    assert record["synthetic_caption"][-1] == dataset[2]["synthetic_caption"]

    for text, value in (("False", False), ("false", False), ("TRUE", True)):
        recipe = load_recipe(TINY, [f"data.multi_granularity_captions={text}"])
        assert recipe.data.multi_granularity_captions is value
    with pytest.raises(ValueError, match="multi_granularity_captions must be True or False"):
        load_recipe(TINY, ["data.multi_granularity_captions=yes"])
