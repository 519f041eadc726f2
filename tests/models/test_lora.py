"""LoRA on TIPS: `enable_lora(rank)` adds trainable updates to the fused
qkv projections of both towers, and nothing else trains."""

import keras
import numpy as np
import pytest

from keras_tips import TIPSModel
from keras_tips import backend

pytestmark = pytest.mark.multibackend

RANK = 4


def _images():
    return np.random.default_rng(0).random((2, 56, 70, 3)).astype("float32")


TEXTS = ["a photo of two cows", "a red circle"]


def _outputs(model):
    return {**model.encode_images(_images()), "texts": model.encode_texts(TEXTS)}


def _assert_outputs_equal(got, expected, atol=0.0):
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=0, atol=atol, err_msg=key)


def _trainer(model):
    """`step()` runs one SGD step of a contrastive loss on the backbone's
    logits (compiled once)."""
    backbone = model.backbone
    trainer = keras.Model(backbone.input, backbone.output["logits"])
    trainer.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1.0),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    token_ids, padding_mask = model.tokenize(TEXTS)
    inputs = {"images": _images(), "token_ids": token_ids, "padding_mask": padding_mask}
    return lambda: trainer.train_on_batch(inputs, np.eye(2, dtype="float32"))


def _values(weights):
    return {w.path: keras.ops.convert_to_numpy(w).copy() for w in weights}


def test_enable_lora_trains_exactly_the_qkv_updates_of_both_towers(reference_presets):
    model = TIPSModel.from_preset(reference_presets["tips_tiny"])
    before = _outputs(model)  # Compiled before LoRA: must be recompiled.
    backbone = model.backbone
    backbone.enable_lora(RANK)

    qkv_layers = [block.attention.qkv for block in backbone.vision_encoder.blocks]
    qkv_layers += [block.attention.qkv for block in backbone.text_encoder.blocks]
    expected = {w.path for layer in qkv_layers for w in (layer.lora_kernel_a, layer.lora_kernel_b)}
    assert {w.path for w in backbone.trainable_weights} == expected
    assert {w.path for w in model.trainable_weights} == expected
    assert all(layer.lora_kernel_a.shape[1] == RANK for layer in qkv_layers)

    # B starts at zero: outputs unchanged, fast kernels and plain ops alike.
    _assert_outputs_equal(_outputs(model), before)
    with backend.fast_kernels(False):
        _assert_outputs_equal(_outputs(model), before, atol=1e-5)

    frozen = _values(backbone.non_trainable_weights)
    start = _values(backbone.trainable_weights)
    step = _trainer(model)
    step()
    first = _values(backbone.trainable_weights)
    # d(loss)/dA = 0 while B = 0: the first step moves B only.
    for path in expected:
        moved = not np.array_equal(first[path], start[path])
        assert moved == path.endswith("lora_kernel_b"), path
    step()
    second = _values(backbone.trainable_weights)
    for path in expected:
        if path.endswith("lora_kernel_a"):
            assert not np.array_equal(second[path], first[path]), path
    _assert_outputs_equal(_values(backbone.non_trainable_weights), frozen)

    # The trained updates change what the model computes.
    trained = _outputs(model)
    assert np.abs(trained["cls_1"] - before["cls_1"]).max() > 1e-4
    assert np.abs(trained["texts"] - before["texts"]).max() > 1e-4


def test_lora_weights_save_and_load_and_merge_into_presets(reference_presets, tmp_path):
    model = TIPSModel.from_preset(reference_presets["tips_tiny"])
    model.backbone.enable_lora(RANK)
    step = _trainer(model)
    step()
    step()
    trained = _outputs(model)

    path = str(tmp_path / "adapter.lora.h5")
    model.backbone.save_lora_weights(path)
    fresh = TIPSModel.from_preset(reference_presets["tips_tiny"])
    fresh.backbone.load_lora_weights(path)  # Enables LoRA of the saved rank.
    _assert_outputs_equal(_outputs(fresh), trained)

    # A preset stores the kernels with the updates merged in.
    model.save_to_preset(str(tmp_path / "merged"))
    merged = TIPSModel.from_preset(str(tmp_path / "merged"))
    assert not merged.backbone.vision_encoder.blocks[0].attention.qkv.lora_enabled
    _assert_outputs_equal(_outputs(merged), trained, atol=1e-5)


def test_lora_on_named_layers_and_a_clear_error_for_unknown_names(reference_presets):
    model = TIPSModel.from_preset(reference_presets["tips_tiny"])
    model.backbone.enable_lora(2, target_layer_names=["qkv", "proj"])
    names = {w.path.split("/")[-2] for w in model.backbone.trainable_weights}
    assert names == {"qkv", "proj"}
    other = TIPSModel.from_preset(reference_presets["tips_tiny"])
    with pytest.raises(ValueError, match="qkv, proj"):
        other.backbone.enable_lora(2, target_layer_names=["query"])
