"""JAX kernels of `keras_tips.backend`.

* GELU: the erf form (`keras_kernels.erf_gelu`); XLA's CPU `erf` is much
  cheaper than the `erfc` that `jax.nn.gelu` uses. Dense layers are Keras'
  own `Dense` followed by it (XLA fuses the bias and activation anyway).
* Attention on the CPU: einsums on the token-major qkv with the softmax
  normalisation applied after the value product (`attend_token_major`),
  about a sixth faster than `keras.ops.dot_product_attention` under XLA on
  the CPU at 258 tokens and at 1,026 (`benchmarks/image_encoder.py`). On
  accelerators `keras.ops.dot_product_attention`, which can pick a fused
  (cuDNN / TPU flash) kernel.
* No fused patch embedding or block forward: under `jax.jit` XLA fuses
  across layers itself.
"""

import functools

import jax
import keras
from keras import ops

from keras_tips.backend import keras_kernels
from keras_tips.backend.keras_kernels import fused_patch_embedding  # noqa: F401
from keras_tips.backend.keras_kernels import fused_vision_block  # noqa: F401

gelu = keras_kernels.erf_gelu


def activate(x, activation):
    return keras_kernels.activate(x, activation, gelu)


def dense(layer, inputs, activation=None):
    return keras_kernels.dense(layer, inputs, activation, gelu)


def attention(qkv, mask=None):
    if on_cpu():
        return attend_token_major(qkv, mask)
    return keras_kernels.attention(qkv, mask)


@functools.cache
def on_cpu():
    """Whether JAX computes on the CPU (fixed once JAX has started)."""
    return jax.default_backend() == "cpu"


def attend_token_major(qkv, mask=None):
    """Softmax attention of a (B, T, 3, heads, head_dim) qkv tensor.

    The einsums read query, key and value in the projection's token-major
    layout and write the output token-major, so XLA picks the operand
    layouts itself (explicit (B, heads, T, head_dim) transposes cost about a
    sixth of the throughput at 1,026 tokens on the CPU). The 1/sqrt(head_dim)
    scale goes on the queries (not the T x T logits), the logits are
    exponentiated in float32 after subtracting their row maximum, and the
    rows are normalised after the product with the values, on head_dim
    instead of T entries per query. Mathematically the softmax attention of
    `keras.ops.dot_product_attention`.

    Args:
        qkv: (B, T, 3, heads, head_dim) tensor.
        mask: optional bool, broadcastable to (B, heads, T, T); False
            entries are not attended to.

    Returns:
        (B, T, heads, head_dim) tensor.
    """
    head_dim = qkv.shape[-1]
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    query = query * ops.cast(head_dim**-0.5, query.dtype)
    logits = ops.cast(ops.einsum("bthd,bshd->bhts", query, key), "float32")
    if mask is not None:
        logits = ops.where(mask, logits, ops.cast(-1e30, "float32"))
    logits = logits - ops.stop_gradient(ops.max(logits, axis=-1, keepdims=True))
    weights = ops.exp(logits)
    # (B, heads, T) -> (B, T, heads, 1), to divide the token-major output.
    total = ops.expand_dims(
        ops.transpose(ops.sum(weights, axis=-1), (0, 2, 1)), -1
    )
    attended = ops.einsum(
        "bhts,bshd->bthd", ops.cast(weights, value.dtype), value
    )
    return attended / ops.cast(total, attended.dtype)


def compile_inference(layer, function):
    """`jax.jit` of `function` with the layer's variables passed in
    (stateless), so the compiled function reads their current values."""

    def stateless(trainable, non_trainable, *args):
        mapping = list(zip(layer.trainable_variables, trainable)) + list(
            zip(layer.non_trainable_variables, non_trainable)
        )
        with keras.StatelessScope(state_mapping=mapping):
            return function(*args)

    jitted = jax.jit(stateless)

    def run(*args):
        return jitted(
            [v.value for v in layer.trainable_variables],
            [v.value for v in layer.non_trainable_variables],
            *args,
        )

    return run
