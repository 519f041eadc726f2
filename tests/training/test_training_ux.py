"""Training conveniences of a recipe: dtype, logging, starting from a preset."""

import os

from keras_tips.training.loop import build_pretrainer
from keras_tips.training.recipe import load_recipe

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
