"""DINOHead: shapes, weight-normalised prototypes, NumPy forward, config."""

import math

import keras
import numpy as np
import pytest

from keras_tips.training.heads import DINOHead

pytestmark = pytest.mark.multibackend


def small_head(**kwargs):
    config = dict(num_prototypes=11, hidden_dim=16, bottleneck_dim=8, num_layers=3)
    config.update(kwargs)
    return DINOHead(**config)


def np_gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def reference_forward(head, x):
    """Dense layers, L2 norm, then unit-norm prototype columns, in float64."""
    h = np.asarray(x, np.float64)
    for layer in head.mlp_layers:
        kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
        h = h @ kernel + bias
        if layer is not head.mlp_layers[-1]:
            h = np_gelu(h)
    h = h / np.linalg.norm(h, axis=-1, keepdims=True)
    w = np.asarray(keras.ops.convert_to_numpy(head.prototypes), np.float64)
    w = w / np.linalg.norm(w, axis=0, keepdims=True)
    return h @ w


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_shapes_on_cls_and_patch_tokens(num_layers):
    head = small_head(num_layers=num_layers)
    rng = np.random.default_rng(0)
    cls = head(rng.normal(size=(3, 5)).astype("float32"))
    patches = head(rng.normal(size=(3, 4, 5)).astype("float32"))
    assert tuple(cls.shape) == (3, 11)
    assert tuple(patches.shape) == (3, 4, 11)
    assert head.compute_output_shape((None, 4, 5)) == (None, 4, 11)
    assert len(head.mlp_layers) == num_layers
    assert head.mlp_layers[-1].units == 8
    assert tuple(head.prototypes.shape) == (8, 11)


def test_forward_matches_reference_and_is_a_cosine():
    head = small_head()
    x = np.random.default_rng(1).normal(size=(2, 3, 5)).astype("float32")
    got = keras.ops.convert_to_numpy(head(x))
    np.testing.assert_allclose(got, reference_forward(head, x), rtol=1e-4, atol=1e-5)
    assert np.all(np.abs(got) <= 1.0 + 1e-5)


def test_prototypes_are_weight_normalised():
    head = small_head()
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    head.build((None, 5))
    columns = keras.ops.convert_to_numpy(head.normalized_prototypes())
    np.testing.assert_allclose(np.linalg.norm(columns, axis=0), 1.0, rtol=1e-5)
    before = keras.ops.convert_to_numpy(head(x))
    # Rescaling each prototype (column) leaves the logits unchanged ...
    scales = np.linspace(0.1, 7.0, 11).astype("float32")
    head.prototypes.assign(head.prototypes * scales[None, :])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x)), before, rtol=1e-4, atol=1e-6)
    # ... and a stored prototype is read back as its unit direction.
    direction = np.zeros((8,), "float32")
    direction[3] = 1.0
    prototypes = np.random.default_rng(3).normal(size=(8, 11)).astype("float32")
    prototypes[:, 4] = 2.5 * direction
    head.prototypes.assign(prototypes)
    features = keras.ops.convert_to_numpy(head.normalized_prototypes())
    np.testing.assert_allclose(features[:, 4], direction, atol=1e-6)


def test_get_config_round_trip():
    head = small_head(num_layers=2, epsilon=1e-8, name="dino_head")
    head.build((None, 5))
    config = head.get_config()
    clone = DINOHead.from_config(config)
    assert clone.get_config() == config
    for key, value in {
        "num_prototypes": 11,
        "hidden_dim": 16,
        "bottleneck_dim": 8,
        "num_layers": 2,
        "epsilon": 1e-8,
    }.items():
        assert config[key] == value
    clone.build((None, 5))
    clone.set_weights(head.get_weights())
    x = np.random.default_rng(4).normal(size=(2, 5)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(head(x)), rtol=1e-6
    )
    # Registered under the package name.
    serialized = keras.saving.serialize_keras_object(head)
    assert serialized["registered_name"] == "keras_tips>DINOHead"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(restored, DINOHead) and restored.num_layers == 2


def test_weight_names_for_weight_decay():
    head = small_head()
    head.build((None, 5))
    names = sorted(w.name for w in head.weights)
    assert names == ["bias"] * 3 + ["kernel"] * 3 + ["prototypes"]


def test_mixed_precision_keeps_the_prototype_logits_in_float32():
    head = small_head(dtype="mixed_bfloat16")
    x = np.random.default_rng(0).normal(size=(2, 3, 5)).astype("float32")
    out = head(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float32"
    assert keras.backend.standardize_dtype(head.prototypes.dtype) == "float32"
    # The MLP runs in bfloat16; the scores of its (bfloat16) bottleneck are
    # float32 cosines, not bfloat16 roundings of them.
    assert keras.backend.standardize_dtype(head.mlp_layers[0](x).dtype) == "bfloat16"
    logits = keras.ops.convert_to_numpy(out)
    rounded = keras.ops.convert_to_numpy(
        keras.ops.cast(keras.ops.cast(out, "bfloat16"), "float32")
    )
    assert np.abs(logits - rounded).max() > 0


def test_rejects_zero_layers():
    with pytest.raises(ValueError, match="num_layers"):
        DINOHead(num_prototypes=4, num_layers=0)
