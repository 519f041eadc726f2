"""Training conveniences of a recipe: dtype, logging, starting from a preset."""

import json
import os

import keras
import numpy as np
import pytest

from keras_tips.training.loop import build_pretrainer
from keras_tips.training.recipe import load_recipe
from tests.training.pretrain_fixtures import numpy_weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "recipes", "tiny_shapes.py")


def test_the_recipe_dtype_reaches_both_towers_and_the_teacher():
    recipe = load_recipe(TINY, ["model.dtype='mixed_bfloat16'"])
    pretrainer = build_pretrainer(recipe, vocabulary_size=100)
    backbone = pretrainer.backbone
    layers = (
        backbone, backbone.vision_encoder, backbone.text_encoder,
        pretrainer.teacher_vision_encoder, pretrainer.dino_head,
    )
    for layer in layers:
        assert layer.dtype_policy.name == "mixed_bfloat16", layer.name
    assert backbone.vision_encoder.cls_token.dtype == "float32"


# A small and quick variant of the demo recipe (as the robustness tests use).
SMALL = (
    "optimizer.warmup_steps=0",
    "data.num_examples=32",
    "data.pipeline.batch_size=4",
    "model.vision.num_layers=1",
    "model.text.num_layers=1",
    "objective.num_prototypes=64",
    "objective.head_hidden_dim=32",
    "objective.head_bottleneck_dim=16",
)


def test_log_every_steps_follows_the_checkpoint_interval_and_divides_it():
    recipe = load_recipe(TINY, ["train.total_steps=1000", "train.steps_per_checkpoint=100"])
    assert recipe.train.log_every_steps == 100
    recipe = load_recipe(TINY, ["train.total_steps=1000", "train.steps_per_checkpoint=100",
                                "train.log_every_steps=10"])
    assert recipe.train.log_every_steps == 10
    with pytest.raises(ValueError, match="log_every_steps \\(30\\) must be a positive divisor"):
        load_recipe(TINY, ["train.total_steps=1000", "train.steps_per_checkpoint=100",
                           "train.log_every_steps=30"])


@pytest.mark.parametrize("overrides, message", [
    (["train.lock_text=True"], "train.lock_text freezes a tower, but nothing initialises it"),
    (["train.init_preset='p'", "train.lock_image=True", "train.lock_text=True"],
     "together freeze both towers"),
    (["train.init_preset='p'", "train.lock_image=True", "objective.koleo_weight=0.1"],
     "objective.distill_weight, objective.mask_weight, objective.koleo_weight train"),
    (["train.init_preset='p'", "train.lock_image=True", "objective.distill_weight=0",
      "objective.mask_weight=0", "model.vision.drop_path_rate=0.1"], "drop_path_rate=0"),
])
def test_contradictory_freezing_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_recipe(TINY, overrides)


def _export_preset(recipe, directory):
    """A student of `recipe` exported as a preset, not trained."""
    from keras_tips.models.tips_image_converter import TIPSImageConverter
    from keras_tips.models.tips_preprocessor import TIPSPreprocessor
    from keras_tips.training.loop import build_tokenizer

    keras.utils.set_random_seed(recipe.train.seed)
    tokenizer = build_tokenizer(recipe, str(directory.parent))
    pretrainer = build_pretrainer(recipe, tokenizer.vocabulary_size())
    size = recipe.data.image_size
    preprocessor = TIPSPreprocessor(tokenizer, TIPSImageConverter((size, size)))
    pretrainer.export_student(str(directory), preprocessor)
    return numpy_weights(pretrainer.backbone)


@pytest.fixture(scope="module")
def small_preset(tmp_path_factory):
    """A preset of the SMALL recipe's architecture, from other random
    weights (seed 5) than a run of seed 0 starts with."""
    directory = tmp_path_factory.mktemp("init") / "preset"
    weights = _export_preset(load_recipe(TINY, [*SMALL, "train.seed=5"]), directory)
    return str(directory), weights


def test_a_run_starts_from_the_preset_and_its_teacher_too(small_preset):
    from keras_tips.training.loop import build_tokenizer

    preset, preset_weights = small_preset
    fresh = numpy_weights(build_pretrainer(load_recipe(TINY, SMALL), 100).backbone)
    recipe = load_recipe(TINY, [*SMALL, f"train.init_preset={preset!r}", "train.lock_text=True"])
    tokenizer = build_tokenizer(recipe)
    pretrainer = build_pretrainer(recipe, tokenizer.vocabulary_size())
    student = numpy_weights(pretrainer.backbone)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(fresh, preset_weights))
    for mine, theirs in zip(student, preset_weights):
        np.testing.assert_array_equal(mine, theirs)
    vision = numpy_weights(pretrainer.backbone.vision_encoder)
    for teacher, student_weight in zip(numpy_weights(pretrainer.teacher_vision_encoder), vision):
        np.testing.assert_array_equal(teacher, student_weight)
    # The locked text tower is not among the variables the optimizer updates.
    text = {id(v) for v in pretrainer.backbone.text_encoder.weights}
    trainable = {id(v) for v in pretrainer.trainable_variables}
    assert not text & trainable
    assert {id(v) for v in pretrainer.backbone.vision_encoder.trainable_weights} <= trainable


def test_a_preset_of_other_towers_or_another_tokenizer_is_refused(small_preset, tmp_path):
    from keras_tips.data.vocabulary import shapes_vocabulary
    from keras_tips.training.loop import build_tokenizer

    preset, _ = small_preset
    recipe = load_recipe(TINY, [*SMALL, f"train.init_preset={preset!r}",
                                "model.vision.num_layers=2", "data.sequence_length=32"])
    with pytest.raises(ValueError, match=(
        "model.vision.num_layers is 2, the preset's 1; data.sequence_length "
        "is 32, the preset's 16. Set those fields"
    )):
        build_pretrainer(recipe, build_tokenizer(recipe).vocabulary_size())
    other = str(tmp_path / "other.spm")
    shapes_vocabulary(other, seed=7)
    recipe = load_recipe(TINY, [*SMALL, f"train.init_preset={preset!r}",
                                f"data.tokenizer={other!r}"])
    with pytest.raises(ValueError, match="is not the tokenizer of train.init_preset"):
        build_tokenizer(recipe)


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _csv(path):
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_logging_windows_survive_a_resume_and_a_locked_tower_stays(small_preset, tmp_path):
    """8 steps, a checkpoint every 4, the history every 2, the image tower of
    a preset locked (LiT). A kill during step 8, after the logs of step 6
    and before the checkpoint of step 8, is simulated; the resumed run logs
    steps 6 and 8 again, once each, with the values of the uninterrupted
    run."""
    import shutil

    from keras_tips.models.tips_model import TIPSModel
    from keras_tips.training.loop import pretrain

    preset, _ = small_preset
    recipe = load_recipe(TINY, [
        *SMALL, "train.total_steps=8", "train.steps_per_checkpoint=4",
        "train.log_every_steps=2", "train.csv_log=True", "train.tensorboard=True",
        f"train.init_preset={preset!r}", "train.lock_image=True",
        "objective.distill_weight=0", "objective.mask_weight=0",
    ])
    run = tmp_path / "run"
    pretrain(recipe, str(run), verbose=0)
    history = _jsonl(run / "history.jsonl")
    assert [r["step"] for r in history] == [2, 4, 6, 8]
    rows = _csv(run / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    for record, row in zip(history, rows):
        assert float(row["loss"]) == pytest.approx(record["loss"], rel=1e-6)
    assert any(name.startswith("events") for name in os.listdir(run / "tensorboard" / "train"))
    # The locked image tower is the preset's; the text tower has trained.
    initial, trained = TIPSModel.from_preset(preset), TIPSModel.from_preset(str(run / "preset"))
    for a, b in zip(numpy_weights(initial.backbone.vision_encoder),
                    numpy_weights(trained.backbone.vision_encoder)):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(
        numpy_weights(initial.backbone.text_encoder), numpy_weights(trained.backbone.text_encoder)))

    # The kill: the checkpoint of step 8 was never completed.
    shutil.rmtree(run / "checkpoints" / "step_00000008")
    (run / "checkpoints" / "latest").write_text("step_00000004", encoding="utf-8")
    (run / "history.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in history[:3]), encoding="utf-8"
    )
    lines = (run / "history.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (run / "history.csv").write_text("".join(lines[:4]), encoding="utf-8")
    pretrain(recipe, str(run), verbose=0)
    resumed = _jsonl(run / "history.jsonl")
    assert [r["step"] for r in resumed] == [2, 4, 6, 8]
    for want, got in zip(history, resumed):
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, want["step"])
    assert [int(r["epoch"]) for r in _csv(run / "history.csv")] == [0, 1, 2, 3]
