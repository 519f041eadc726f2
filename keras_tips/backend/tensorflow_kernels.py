"""TensorFlow kernels of `keras_tips.backend`.

* Dense layers: `tf.matmul` on the tokens flattened to 2-D, `tf.nn.bias_add`
  and the activation (`fused_dense`); TensorFlow's graph optimiser fuses that
  pattern into one oneDNN matmul with bias and activation. (Keras' `Dense`
  on 3-D tokens goes through `tensordot`, whose reshapes leave the bias add
  and the five ops of the exact GELU unfused.)
* GELU: under XLA (`jit_compile`, which Keras' `fit` uses by default) the
  erf form (`keras_kernels.erf_gelu`), which XLA's CPU backend computes
  much faster than the `erfc` form of `tf.nn.gelu`; elsewhere
  `keras.ops.gelu`, which Grappler fuses into the matmul.
* Attention: head-major `tf.matmul` and the fused `tf.nn.softmax`
  (`attend_head_major`), a few per cent faster than the einsums of
  `keras.ops.dot_product_attention` on TensorFlow's oneDNN kernels.
* No fused patch embedding or block forward.

Not a fast kernel but TensorFlow-only all the same: `resize_bilinear_antialiased`
resizes to a size known only when the graph runs.
"""

import tensorflow as tf

from keras_tips.backend import keras_kernels
from keras_tips.backend.keras_kernels import fused_patch_embedding  # noqa: F401
from keras_tips.backend.keras_kernels import fused_vision_block  # noqa: F401


def gelu(x):
    if in_xla_context():
        return keras_kernels.erf_gelu(x)
    return keras_kernels.gelu(x)


def activate(x, activation):
    return keras_kernels.activate(x, activation, gelu)


def dense(layer, inputs, activation=None):
    if keras_kernels.is_plain_dense(layer):
        return fused_dense(layer, inputs, activation)
    return keras_kernels.dense(layer, inputs, activation, gelu)


def attention(qkv, mask=None):
    return attend_head_major(qkv, mask)


def in_xla_context():
    """Whether TensorFlow is tracing a function for XLA (`jit_compile`)."""
    try:
        from tensorflow.python.ops import control_flow_util

        return bool(
            control_flow_util.GraphOrParentsInXlaContext(
                tf.compat.v1.get_default_graph()
            )
        )
    except Exception:  # The private helper moved: assume no XLA.
        return False


def fused_dense(layer, inputs, activation=None):
    """A plain `keras.layers.Dense` (see `keras_kernels.is_plain_dense`) as
    2-D `tf.matmul` + `tf.nn.bias_add` + activation, which Grappler fuses
    into one oneDNN `_FusedMatMul` (and XLA fuses anyway)."""
    kernel = tf.cast(layer.kernel.value, inputs.dtype)
    units = kernel.shape[1]
    outputs = tf.matmul(tf.reshape(inputs, [-1, kernel.shape[0]]), kernel)
    if layer.use_bias:
        outputs = tf.nn.bias_add(outputs, tf.cast(layer.bias.value, inputs.dtype))
    outputs = activate(outputs, activation)
    static_shape = inputs.shape[:-1].concatenate([units])
    if static_shape.is_fully_defined():
        return tf.reshape(outputs, static_shape)
    outputs = tf.reshape(
        outputs, tf.concat([tf.shape(inputs)[:-1], [units]], axis=0)
    )
    outputs.set_shape(static_shape)
    return outputs


def attend_head_major(qkv, mask=None):
    """Softmax attention in TensorFlow ops: `tf.matmul` with a transposed
    key and the fused `tf.nn.softmax`, which TensorFlow's oneDNN kernels run
    faster than einsums and separate softmax steps. Same arguments and
    result as `keras_kernels.attention`."""
    head_dim = qkv.shape[-1]
    query, key, value = tf.unstack(tf.transpose(qkv, (2, 0, 3, 1, 4)))
    logits = tf.matmul(query, key, transpose_b=True)
    logits = tf.cast(logits * tf.cast(head_dim**-0.5, logits.dtype), "float32")
    if mask is not None:
        logits = tf.where(mask, logits, tf.constant(-1e30, "float32"))
    weights = tf.cast(tf.nn.softmax(logits, axis=-1), value.dtype)
    return tf.transpose(tf.matmul(weights, value), (0, 2, 1, 3))


def resize_bilinear_antialiased(images, height, width):
    """Bilinear, antialiased resize of (B, h, w, C) images to a size given
    as scalar tensors (`keras.ops.image.resize` wants Python ints); the
    same resize as `keras.ops.image.resize(..., antialias=True)`."""
    return tf.image.resize(
        images, tf.stack([height, width]), method="bilinear", antialias=True
    )


def compile_inference(layer, function):
    """`tf.function` of `function`, retracing as little as it can."""
    return tf.function(function, reduce_retracing=True)
