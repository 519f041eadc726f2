"""build_optimizer / TIPSAdamW: schedule, weight decay exclusions, layer-wise
learning-rate decay, global and per-module clipping, a frozen prototype
layer, serialisation, a compiled fit step."""

import re

import keras
import numpy as np
import pytest

from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder
from keras_tips.training.optimizers import OptimizerConfig
from keras_tips.training.optimizers import TIPSAdamW
from keras_tips.training.optimizers import build_optimizer
from keras_tips.training.optimizers import layer_lr_multiplier
from keras_tips.training.schedules import WarmupCosineDecay

pytestmark = pytest.mark.multibackend


def tiny_encoder():
    encoder = TIPSVisionEncoder(
        hidden_dim=8,
        num_layers=3,
        num_heads=2,
        intermediate_dim=16,
        position_grid_size=2,
        name="tips_vision_encoder",
    )
    encoder.build()
    return encoder


def snapshot(variables):
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for v in variables}


def test_build_optimizer_settings():
    optimizer = build_optimizer(
        OptimizerConfig(
            peak_learning_rate=2e-3,
            total_steps=100,
            warmup_steps=10,
            weight_decay=0.05,
            global_clipnorm=1.5,
        )
    )
    assert isinstance(optimizer, TIPSAdamW)
    assert isinstance(optimizer._learning_rate, WarmupCosineDecay)
    assert optimizer.global_clipnorm == 1.5
    assert optimizer.weight_decay == 0.05
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(optimizer.learning_rate)), 0.0)
    # Dicts and keyword overrides work too.
    from_dict = build_optimizer({"peak_learning_rate": 1.0, "total_steps": 5}, layer_decay=0.5)
    assert from_dict.layer_decay == 0.5
    with pytest.raises(TypeError):
        build_optimizer(3)


def test_weight_decay_exclusions_on_the_vision_encoder():
    encoder = tiny_encoder()
    variables = encoder.trainable_variables
    lr, wd = 0.1, 0.5
    optimizer = build_optimizer(
        peak_learning_rate=lr, total_steps=10, weight_decay=wd, final_learning_rate=lr
    )
    before = snapshot(variables)
    # Zero gradients: Adam moves nothing, so only weight decay acts.
    optimizer.apply([keras.ops.zeros(v.shape, v.dtype) for v in variables], variables)
    after = snapshot(variables)
    decayed = set()
    for path, old in before.items():
        if np.allclose(after[path], old * (1 - lr * wd), rtol=1e-6) and np.any(old):
            decayed.add(path)
        else:
            np.testing.assert_array_equal(after[path], old, err_msg=path)
    names = {path.split("/")[-1] for path in decayed}
    assert names == {"kernel"}, names
    kernels = {p for p in before if p.endswith("/kernel")}
    assert decayed == kernels
    excluded = {p.split("/")[-1] for p in set(before) - decayed}
    assert excluded == {
        "bias",
        "beta",
        "gamma",
        "cls_token",
        "register_token",
        "mask_token",
        "position_embedding",
    }


def test_layer_multipliers():
    paths = {
        "tips_vision_encoder/cls_token": 0.5**4,
        "tips_vision_encoder/patch_embed/kernel": 0.5**4,
        "tips_vision_encoder/position_embedding": 0.5**4,
        "tips_vision_encoder/blocks_0/attn/qkv/kernel": 0.5**3,
        "tips_vision_encoder/blocks_2/ls1/gamma": 0.5**1,
        "tips_vision_encoder/norm/gamma": 1.0,
        "tips_text_encoder/resblocks_0/attn/qkv/kernel": 1.0,
        "dino_head/prototypes": 1.0,
    }
    for path, expected in paths.items():
        assert layer_lr_multiplier(path, 0.5, 3) == pytest.approx(expected), path
    assert layer_lr_multiplier("x/layer_1/kernel", 0.5, 3, r"(?:^|/)layer_(\d+)/") == 0.25
    assert layer_lr_multiplier("tips_vision_encoder/blocks_0/k", 1.0, 3) == 1.0


def test_layer_decay_scales_the_update():
    encoder = tiny_encoder()
    variables = encoder.trainable_variables
    lr, decay = 0.1, 0.5
    optimizer = build_optimizer(
        peak_learning_rate=lr,
        total_steps=10,
        final_learning_rate=lr,
        weight_decay=0.0,
        global_clipnorm=None,
        layer_decay=decay,
    )
    before = snapshot(variables)
    # Unit gradients: Adam's first step moves every entry by lr * multiplier.
    optimizer.apply([keras.ops.ones(v.shape, v.dtype) for v in variables], variables)
    after = snapshot(variables)
    assert optimizer._resolved_num_layers == 3  # inferred from blocks_0..2
    for v in variables:
        expected = lr * layer_lr_multiplier(v.path, decay, 3)
        assert optimizer.lr_multiplier(v) == pytest.approx(expected / lr)
        np.testing.assert_allclose(
            before[v.path] - after[v.path], expected, rtol=1e-4, err_msg=v.path
        )
    moved = {p: float(np.mean(before[p] - after[p])) for p in before}
    assert moved["tips_vision_encoder/cls_token"] == pytest.approx(lr * decay**4, rel=1e-4)
    assert moved["tips_vision_encoder/norm/gamma"] == pytest.approx(lr, rel=1e-4)


def test_layer_decay_also_scales_weight_decay():
    variable = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    optimizer = TIPSAdamW(
        learning_rate=0.1, weight_decay=0.5, layer_decay=0.5, num_layers=1,
        layer_pattern=r"(\d+)$", embedding_pattern="^kernel$",
    )
    optimizer.apply([keras.ops.zeros(variable.shape)], [variable])
    # layer_id 0 (embedding) -> multiplier 0.5 ** 2
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(variable), 1 - 0.1 * 0.5 * 0.25, rtol=1e-6
    )


def test_weight_decay_schedule():
    variable = keras.Variable(np.ones((3,), "float32"), name="kernel")
    optimizer = TIPSAdamW(
        learning_rate=1.0, weight_decay=0.04, final_weight_decay=0.2, weight_decay_steps=100
    )
    optimizer.build([variable])
    current = lambda: float(keras.ops.convert_to_numpy(optimizer.current_weight_decay()))  # noqa: E731
    np.testing.assert_allclose(current(), 0.04, rtol=1e-6)
    optimizer.iterations.assign(50)
    np.testing.assert_allclose(current(), 0.12, rtol=1e-6)
    optimizer.iterations.assign(100)
    optimizer.apply([keras.ops.zeros(variable.shape)], [variable])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), 0.8, rtol=1e-6)


def test_global_clipnorm_is_applied():
    variable = keras.Variable(np.zeros((2,), "float32"), name="bias")
    optimizer = TIPSAdamW(learning_rate=1.0, weight_decay=0.0, global_clipnorm=1.0)
    grads = [keras.ops.convert_to_tensor(np.array([30.0, 40.0], "float32"))]
    clipped = keras.ops.convert_to_numpy(optimizer._clip_gradients(grads)[0])
    np.testing.assert_allclose(clipped, [0.6, 0.8], rtol=1e-5)


def test_serialisation_round_trip():
    optimizer = build_optimizer(
        peak_learning_rate=1e-3,
        total_steps=50,
        warmup_steps=5,
        layer_decay=0.75,
        num_layers=12,
        final_weight_decay=0.2,
    )
    config = optimizer.get_config()
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, TIPSAdamW)
    assert restored.get_config() == config
    assert restored.layer_decay == 0.75 and restored.num_layers == 12
    assert restored.no_weight_decay_names == optimizer.no_weight_decay_names
    with pytest.raises(ValueError, match="layer_decay"):
        TIPSAdamW(layer_decay=1.5)
    with pytest.raises(ValueError, match="group"):
        TIPSAdamW(layer_pattern="blocks_")


def test_compiled_fit_step_with_layer_decay():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="blocks_0")(inputs)
    hidden = keras.layers.LayerNormalization(name="norm")(hidden)
    outputs = keras.layers.Dense(1, name="blocks_1")(hidden)
    model = keras.Model(inputs, outputs)
    optimizer = build_optimizer(
        peak_learning_rate=1e-2, total_steps=4, warmup_steps=1, layer_decay=0.5
    )
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    before = snapshot(model.trainable_variables)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = snapshot(model.trainable_variables)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2
    assert all(not np.array_equal(before[p], after[p]) for p in before)
    # Two blocks: blocks_0 is layer 1 of 2 -> 0.5 ** (2 + 1 - 1).
    assert optimizer.lr_multiplier(model.get_layer("blocks_0").kernel) == 0.25
    assert optimizer.lr_multiplier(model.get_layer("norm").gamma) == 1.0


class _Prototypes(keras.layers.Layer):
    """x @ prototypes, with the name of the heads' last layer."""

    def build(self, input_shape):
        self.prototypes = self.add_weight(
            name="prototypes", shape=(input_shape[-1], 3), initializer="ones"
        )

    def call(self, x):
        return keras.ops.matmul(x, self.prototypes)


def test_frozen_last_layer_moves_only_after_its_steps():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(4, name="blocks_0")(inputs)
    head = _Prototypes(name="dino_head")
    model = keras.Model(inputs, head(hidden))
    optimizer = build_optimizer(
        peak_learning_rate=1e-2, total_steps=8, weight_decay=0.5,
        freeze_last_layer_steps=2,
    )
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.ones((8, 3), "float32")
    before = snapshot(model.trainable_variables)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 2 steps
    after = snapshot(model.trainable_variables)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2
    prototypes = head.prototypes.path
    np.testing.assert_array_equal(after[prototypes], before[prototypes])
    assert not np.array_equal(after["blocks_0/kernel"], before["blocks_0/kernel"])
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    later = snapshot(model.trainable_variables)
    assert not np.array_equal(later[prototypes], after[prototypes])
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert restored.freeze_last_layer_steps == 2


def test_module_clipnorm_bounds_each_module_and_leaves_the_others():
    patterns = {"image": "^image_", "heads": "^head_"}
    variables = [
        keras.Variable(np.zeros((2,), "float32"), name=name)
        for name in ("image_a", "image_b", "head_a", "text_a")
    ]
    optimizer = TIPSAdamW(
        weight_decay=0.0, module_clipnorm={"image": 1.0, "heads": 100.0},
        module_patterns=patterns,
    )
    optimizer.build(variables)
    grads = [
        keras.ops.convert_to_tensor(np.array(g, "float32"))
        for g in ([3.0, 0.0], [0.0, 4.0], [30.0, 40.0], [300.0, 400.0])
    ]
    clipped = [
        keras.ops.convert_to_numpy(g)
        for g in optimizer._clip_modules(grads, variables)
    ]
    # The image module's joint norm 5 is scaled to 1, together.
    np.testing.assert_allclose(clipped[0], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped[1], [0.0, 0.8], rtol=1e-6)
    # Below its bound, and outside every clipped module: untouched.
    np.testing.assert_array_equal(clipped[2], [30.0, 40.0])
    np.testing.assert_array_equal(clipped[3], [300.0, 400.0])
    with pytest.raises(ValueError, match="module"):
        TIPSAdamW(module_clipnorm={"vision": 1.0})
    with pytest.raises(ValueError, match="No trainable variable"):
        TIPSAdamW(
            module_clipnorm={"text": 1.0}, module_patterns=patterns | {"text": "^x"}
        ).build(variables)


def test_default_modules_cover_the_pretrainer():
    from keras_tips.training.optimizers import DEFAULT_MODULE_PATTERNS
    from tests.training.pretrain_fixtures import tiny_pretrainer

    pretrainer = tiny_pretrainer()
    paths = [v.path for v in pretrainer.trainable_variables]
    for path in paths:
        modules = [
            name
            for name, pattern in DEFAULT_MODULE_PATTERNS.items()
            if re.search(pattern, path)
        ]
        assert len(modules) == 1, (path, modules)
    optimizer = TIPSAdamW(
        module_clipnorm={"image": 1.0, "text": 1.0, "heads": 1.0}
    )
    optimizer.build(pretrainer.trainable_variables)
    sizes = {name: len(members) for name, members in optimizer._modules.items()}
    assert sum(sizes.values()) == len(paths) and min(sizes.values()) > 0
