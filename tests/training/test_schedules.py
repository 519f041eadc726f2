"""Schedules against hand-computed values."""

import math

import keras
import numpy as np
import pytest

from keras_tips.training.schedules import WarmupCosineDecay
from keras_tips.training.schedules import cosine_schedule
from keras_tips.training.schedules import linear_warmup_then_constant
from keras_tips.training.schedules import warmup_cosine

pytestmark = pytest.mark.multibackend


def value(x):
    return float(keras.ops.convert_to_numpy(x))


def test_warmup_cosine_decay_key_steps():
    schedule = WarmupCosineDecay(
        peak_learning_rate=1.0,
        total_steps=110,
        warmup_steps=10,
        initial_learning_rate=0.1,
        final_learning_rate=0.0,
    )
    expected = {
        0: 0.1,
        5: 0.55,  # halfway up the warm-up
        10: 1.0,  # peak
        35: 0.5 * (1 + math.cos(math.pi / 4)),  # a quarter of the decay
        60: 0.5,  # half-way down the cosine
        110: 0.0,
        500: 0.0,
    }
    for step, lr in expected.items():
        np.testing.assert_allclose(value(schedule(step)), lr, atol=1e-6, err_msg=step)
    # Works on an integer step tensor (as the optimizer passes it).
    np.testing.assert_allclose(value(schedule(keras.ops.convert_to_tensor(60))), 0.5, atol=1e-6)


def test_warmup_cosine_decay_without_warmup_and_with_floor():
    schedule = WarmupCosineDecay(2.0, total_steps=100, final_learning_rate=0.2)
    np.testing.assert_allclose(value(schedule(0)), 2.0, rtol=1e-6)
    np.testing.assert_allclose(value(schedule(50)), 1.1, rtol=1e-6)
    np.testing.assert_allclose(value(schedule(100)), 0.2, rtol=1e-6)
    np.testing.assert_allclose(value(schedule(101)), 0.2, rtol=1e-6)


def test_warmup_cosine_decay_serialisation():
    schedule = WarmupCosineDecay(1e-3, 1000, 100, 1e-5, 1e-6, name="lr")
    config = schedule.get_config()
    assert WarmupCosineDecay.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert isinstance(restored, WarmupCosineDecay)
    np.testing.assert_allclose(value(restored(300)), value(schedule(300)))
    optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    again = keras.optimizers.AdamW.from_config(optimizer.get_config())
    assert isinstance(again._learning_rate, WarmupCosineDecay)


def test_warmup_cosine_decay_rejects_bad_lengths():
    with pytest.raises(ValueError):
        WarmupCosineDecay(1.0, total_steps=10, warmup_steps=20)
    with pytest.raises(ValueError):
        WarmupCosineDecay(1.0, total_steps=10, warmup_steps=-1)


def test_cosine_schedule_momentum():
    expected = {
        0: 0.994,
        25: 1.0 - 0.003 * (1 + math.cos(math.pi / 4)),
        50: 0.997,
        100: 1.0,
        150: 1.0,
    }
    for step, v in expected.items():
        np.testing.assert_allclose(
            value(cosine_schedule(step, 0.994, 1.0, 100)), v, rtol=1e-7, err_msg=step
        )
    # Weight decay 0.04 -> 0.2, and a zero length gives the end value.
    np.testing.assert_allclose(value(cosine_schedule(500, 0.04, 0.2, 1000)), 0.12, rtol=1e-6)
    np.testing.assert_allclose(value(cosine_schedule(0, 0.04, 0.2, 0)), 0.2, rtol=1e-6)


def test_linear_warmup_then_constant_teacher_temperature():
    expected = {0: 0.04, 15: 0.055, 30: 0.07, 1000: 0.07}
    for step, v in expected.items():
        np.testing.assert_allclose(
            value(linear_warmup_then_constant(step, 0.04, 0.07, 30)), v, rtol=1e-6
        )
    np.testing.assert_allclose(
        value(linear_warmup_then_constant(0, 0.04, 0.07, 0)), 0.07, rtol=1e-6
    )


def test_functional_warmup_cosine():
    np.testing.assert_allclose(value(warmup_cosine(3, 1.0, 10, 4)), 0.75, rtol=1e-6)
    np.testing.assert_allclose(value(warmup_cosine(7, 1.0, 10, 4)), 0.5, rtol=1e-6)


def test_schedules_inside_compiled_functions():
    backend = keras.backend.backend()
    steps = np.array([0, 5, 10, 35], "int32")

    def fn(step):
        return (
            cosine_schedule(step, 0.994, 1.0, 100),
            linear_warmup_then_constant(step, 0.04, 0.07, 10),
            WarmupCosineDecay(1.0, 110, 10, 0.1)(step),
        )

    if backend == "jax":
        import jax

        compiled = jax.jit(fn)
    elif backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(fn)
    else:
        compiled = fn
    for step in steps:
        got = [value(v) for v in compiled(keras.ops.convert_to_tensor(step))]
        want = [value(v) for v in fn(int(step))]
        np.testing.assert_allclose(got, want, rtol=1e-6)
