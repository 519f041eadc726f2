"""The losses inside compiled functions (jax.jit, tf.function with an unknown
batch size) and their gradients on each backend."""

import keras
import numpy as np
import pytest

from keras_tips.losses.contrastive import contrastive_loss
from keras_tips.losses.contrastive import mean_over_caption_types
from keras_tips.losses.dino import dino_loss
from keras_tips.losses.ibot import ibot_patch_loss
from keras_tips.losses.koleo import koleo_loss
from keras_tips.losses.teacher_targets import centered_teacher_probs
from keras_tips.losses.teacher_targets import sinkhorn_knopp_teacher_probs
from keras_tips.losses.teacher_targets import updated_center
from tests.losses.numpy_references import np_softmax

BACKEND = keras.backend.backend()
jax_only = pytest.mark.skipif(BACKEND != "jax", reason="uses jax.grad / jax.jit")


def inputs(seed=0, batch=4, dim=6, patches=5, prototypes=7):
    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, "float32")  # noqa: E731
    return {
        "images": f32(rng.normal(size=(batch, dim))),
        "texts": f32(rng.normal(size=(batch, dim))),
        "valid": np.array([True, False, True, True][:batch]),
        "student": f32(rng.normal(size=(batch, 2, prototypes))),  # 2 local crops
        "teacher_logits": f32(rng.normal(size=(batch, prototypes))),
        "student_patches": f32(rng.normal(size=(batch, patches, prototypes))),
        "teacher_patches": f32(np_softmax(rng.normal(size=(batch, patches, prototypes)))),
        "patch_mask": rng.random((batch, patches)) < 0.5,
        "center": np.zeros((1, prototypes), "float32"),
    }


def all_losses(x):
    ops = keras.ops
    contrastive, accuracy = contrastive_loss(x["images"], x["texts"], 0.1, x["valid"])
    teacher = centered_teacher_probs(x["teacher_logits"], x["center"], 0.04)
    sinkhorn = sinkhorn_knopp_teacher_probs(x["teacher_logits"], 0.04)
    present = ops.cast(ops.any(x["valid"]), "float32")
    return {
        "contrastive": contrastive,
        "accuracy": accuracy,
        "caption_mean": mean_over_caption_types(
            [contrastive, 2.0 * contrastive], [present, ops.zeros((), "float32")]
        ),
        "dino": dino_loss(x["student"], teacher, 0.1),
        "dino_sk": dino_loss(x["student"], sinkhorn, 0.1),
        "center": ops.sum(updated_center(x["center"], x["teacher_logits"], 0.9)),
        "masked_center": ops.sum(
            updated_center(
                x["center"], x["teacher_patches"], 0.9, sample_mask=x["patch_mask"]
            )
        ),
        "ibot": ibot_patch_loss(
            x["student_patches"], x["teacher_patches"], x["patch_mask"], 0.1
        ),
        "koleo": koleo_loss(x["images"]),
    }


def eager_values(x):
    return {k: float(keras.ops.convert_to_numpy(v)) for k, v in all_losses(x).items()}


@jax_only
def test_jax_jit_matches_eager():
    import jax

    x = inputs()
    compiled = jax.jit(all_losses)(x)
    for name, expected in eager_values(x).items():
        np.testing.assert_allclose(float(compiled[name]), expected, rtol=1e-5, err_msg=name)


@jax_only
def test_jax_gradients_are_finite_and_masked():
    import jax

    x = inputs(1)
    x["images"][2] = 0.0  # a zero vector among the valid rows

    def contrastive(images, texts):
        return contrastive_loss(images, texts, 0.1, x["valid"])[0]

    grad_images, grad_texts = jax.grad(contrastive, argnums=(0, 1))(x["images"], x["texts"])
    for grad in (grad_images, grad_texts):
        assert np.all(np.isfinite(grad))
        np.testing.assert_array_equal(np.asarray(grad)[1], 0.0)  # invalid row
        assert np.abs(np.asarray(grad)[[0, 3]]).sum() > 0

    grad_patches = jax.grad(
        lambda s: ibot_patch_loss(s, x["teacher_patches"], x["patch_mask"], 0.1)
    )(x["student_patches"])
    grad_patches = np.asarray(grad_patches)
    assert np.all(np.isfinite(grad_patches))
    np.testing.assert_array_equal(grad_patches[~x["patch_mask"]], 0.0)

    duplicates = np.array(x["images"])
    duplicates[1] = duplicates[0]
    grad_koleo = np.asarray(jax.grad(koleo_loss)(duplicates))
    assert np.all(np.isfinite(grad_koleo))
    assert np.abs(grad_koleo).sum() > 0

    # The teacher side never receives gradient.
    for fn in (
        lambda t: centered_teacher_probs(t, x["center"], 0.04),
        lambda t: sinkhorn_knopp_teacher_probs(t, 0.04),
    ):
        first_crop = x["student"][:, 0]
        grad = jax.grad(lambda t: keras.ops.sum(fn(t) * first_crop))(x["teacher_logits"])
        np.testing.assert_array_equal(np.asarray(grad), 0.0)


@jax_only
def test_jax_dino_gradient_matches_closed_form():
    import jax

    x = inputs(2)
    probs = np_softmax(np.asarray(x["teacher_logits"], np.float64))
    grad = jax.grad(lambda s: dino_loss(s, probs.astype("float32"), 0.1))(
        x["student"]
    )
    # d/ds[b, l] mean_{b, l} CE = (softmax(s[b, l] / tau) - p[b]) / (tau * B * L)
    student = x["student"].astype(np.float64)
    expected = (np_softmax(student / 0.1) - probs[:, None]) / (0.1 * 4 * 2)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.multibackend
@pytest.mark.skipif(BACKEND != "tensorflow", reason="TensorFlow graph mode")
def test_tf_function_with_unknown_batch_size():
    import tensorflow as tf

    x = inputs(3)
    signature = {
        key: tf.TensorSpec((None,) + value.shape[1:], tf.as_dtype(value.dtype))
        for key, value in x.items()
        if key != "center"
    }

    @tf.function(input_signature=[signature])
    def graph(batch):
        return all_losses(dict(batch, center=x["center"]))

    compiled = graph({k: v for k, v in x.items() if k != "center"})
    for name, expected in eager_values(x).items():
        np.testing.assert_allclose(float(compiled[name]), expected, rtol=1e-5, err_msg=name)

    with tf.GradientTape() as tape:
        images = tf.Variable(x["images"])
        loss = contrastive_loss(images, x["texts"], 0.1, x["valid"])[0] + koleo_loss(images)
    grad = tape.gradient(loss, images).numpy()
    assert np.all(np.isfinite(grad))


@pytest.mark.multibackend
@pytest.mark.skipif(BACKEND != "torch", reason="PyTorch autograd")
def test_torch_gradients_are_finite():
    import torch

    x = inputs(4)
    images = torch.tensor(x["images"], requires_grad=True)
    student = torch.tensor(x["student_patches"], requires_grad=True)
    loss = (
        contrastive_loss(images, x["texts"], 0.1, x["valid"])[0]
        + koleo_loss(images)
        + ibot_patch_loss(student, x["teacher_patches"], x["patch_mask"], 0.1)
    )
    loss.backward()
    assert torch.isfinite(images.grad).all()
    assert torch.isfinite(student.grad).all()
    assert float(images.grad[1].abs().sum()) > 0  # KoLeo still reaches row 1
    np.testing.assert_array_equal(student.grad.numpy()[~x["patch_mask"]], 0.0)


@jax_only
def test_jax_batch_sharded_inputs_give_global_results():
    """Sums over the batch axis of sharded arrays are global under jax.jit
    (what keras.distribution data parallelism relies on)."""
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, "-m", "tests.losses.spmd_worker"],
        cwd=root,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    for name, single in values["single"].items():
        np.testing.assert_allclose(
            values["sharded"][name], single, rtol=1e-5, atol=1e-6, err_msg=name
        )
    np.testing.assert_allclose(sum(values["single"]["sinkhorn_column_mass"]), 8.0, rtol=1e-5)
