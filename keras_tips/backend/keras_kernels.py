"""The plain path: every kernel of `keras_tips.backend` in Keras ops.

This is what runs where the fast kernels are switched off
(`keras_tips.backend.fast_kernels(False)`) or the backend has none, and what
the backend modules fall back to for the calls their own forms do not cover.
It is also the reference the fast kernels are tested against.
"""

import keras
from keras import ops

ACTIVATIONS = (None, "gelu", "relu")
_SQRT_HALF = 0.7071067811865476


def is_plain_dense(layer):
    """Whether a `keras.layers.Dense` is a bare matmul + bias that a kernel
    may compute from its variables: no activation of its own, no LoRA, not
    quantised. Anything else runs as the layer itself."""
    return not (layer.lora_enabled or layer.quantization_mode) and (
        layer.activation is keras.activations.linear
    )


def gelu(x):
    """The exact (erf) GELU, as `keras.ops.gelu` computes it."""
    return ops.gelu(x, approximate=False)


def erf_gelu(x):
    """The exact GELU written as `x * (1/2 + erf(x / sqrt(2)) / 2)`.

    Mathematically `gelu`; XLA's CPU backend computes `erf` much faster than
    the `erfc` form behind `jax.nn.gelu` and `tf.nn.gelu`, so the backends
    use this form under XLA.
    """
    return x * (0.5 + 0.5 * ops.erf(x * _SQRT_HALF))


def activate(x, activation, gelu=gelu):
    """`activation(x)` for None (identity), `"gelu"` (exact) or `"relu"`.

    Args:
        x: tensor.
        activation: one of `ACTIVATIONS`.
        gelu: the GELU function to use (a backend passes its fastest form).
    """
    if activation is None:
        return x
    if activation == "gelu":
        return gelu(x)
    if activation == "relu":
        return ops.relu(x)
    raise ValueError(
        f"`activation` must be one of {ACTIVATIONS}. Received: "
        f"activation={activation!r}"
    )


def dense(layer, inputs, activation=None, gelu=gelu):
    """`activation(layer(inputs))`: the layer's own call, then `activate`."""
    return activate(layer(inputs), activation, gelu)


def attention(qkv, mask=None):
    """Softmax attention of a (B, T, 3, heads, head_dim) qkv tensor with
    `keras.ops.dot_product_attention`; (B, T, heads, head_dim) out."""
    return ops.dot_product_attention(
        qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], mask=mask
    )


def fused_patch_embedding(conv, images):
    """No fused patch embedding: the layer runs its convolution."""
    return None


def fused_vision_block(block, inputs, value_only=False):
    """No fused block forward: the block runs its layers."""
    return None


def compile_inference(layer, function):
    """No compiler for this backend: `function` runs eagerly."""
    return function
