"""Multi-head self-attention with a fused query/key/value projection."""

import keras
from keras import ops

from keras_tips.layers.mlp import dense
from keras_tips.layers.mlp import torch_inference_kernels
from keras_tips.layers.mlp import torch_linear


@keras.saving.register_keras_serializable(package="keras_tips")
class FusedQKVAttention(keras.layers.Layer):
    """Self-attention whose Q, K and V come from one dense layer.

    One `(D, 3D)` matmul instead of three is both the layout of the official
    checkpoints (`attn.qkv` in the image tower, `in_proj_weight` in the text
    tower) and faster. The attention itself runs in the form each backend
    computes fastest:

    * PyTorch: `torch.nn.functional.scaled_dot_product_attention` (flash
      kernel on the CPU), through `keras.ops.dot_product_attention`; for
      inference on the CPU (see `keras_tips.layers.mlp`) the layer hands it
      strided views of the qkv projection directly, with no copies.
    * JAX on the CPU: einsums on the token-major qkv with the softmax
      normalisation applied after the value product (`_attend_token_major`),
      about a sixth faster than `keras.ops.dot_product_attention` under XLA
      on the CPU at 258 tokens and at 1,026 (`benchmarks/image_encoder.py`).
    * TensorFlow: head-major `tf.matmul` and `tf.nn.softmax`
      (`_attend_tensorflow`), a few per cent faster than the einsums of
      `keras.ops.dot_product_attention` on TensorFlow's oneDNN kernels.
    * JAX on accelerators: `keras.ops.dot_product_attention`, which can pick
      a fused (cuDNN / TPU flash) kernel.

    Args:
        num_heads: int. Number of attention heads; must divide the width.
        use_bias: bool. Whether the projections have biases.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    attention = FusedQKVAttention(num_heads=4)
    x = keras.ops.ones((2, 7, 64))
    y = attention(x, key_padding_mask=keras.ops.ones((2, 7), "bool"))
    ```
    """

    def __init__(self, num_heads, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = int(num_heads)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim % self.num_heads:
            raise ValueError(
                f"The width {hidden_dim} is not divisible by "
                f"num_heads={self.num_heads}."
            )
        self.head_dim = hidden_dim // self.num_heads
        self.qkv = keras.layers.Dense(
            3 * hidden_dim,
            use_bias=self.use_bias,
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.qkv.build(input_shape)
        self.proj = keras.layers.Dense(
            hidden_dim,
            use_bias=self.use_bias,
            dtype=self.dtype_policy,
            name="proj",
        )
        self.proj.build(input_shape)

    def call(self, inputs, key_padding_mask=None, value_only=False):
        """Attends every token to every (non-padding) token.

        Args:
            inputs: (B, T, D) tokens.
            key_padding_mask: optional bool (B, T), True for real tokens.
                Padding tokens are never attended to.
            value_only: bool. If True, each token attends only to itself, so
                the output is the projected value embedding; dense zero-shot
                maps read this from the last block.
        """
        if torch_inference_kernels(inputs, self):
            return self.torch_inference_call(
                inputs, key_padding_mask, value_only
            )
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        qkv = ops.reshape(
            dense(self.qkv, inputs),
            (batch, length, 3, self.num_heads, self.head_dim),
        )
        if value_only:
            attended = qkv[:, :, 2]
        else:
            mask = None
            if key_padding_mask is not None:
                key_padding_mask = ops.cast(key_padding_mask, "bool")
                # A text made only of padding would have no key to attend
                # to; let it attend everywhere instead of producing NaN. Its
                # tokens are dropped by the masked pooling anyway.
                all_padding = ops.logical_not(
                    ops.any(key_padding_mask, axis=-1, keepdims=True)
                )
                key_padding_mask = ops.logical_or(key_padding_mask, all_padding)
                mask = key_padding_mask[:, None, None, :]
            backend = keras.backend.backend()
            if backend == "tensorflow":
                attended = _attend_tensorflow(qkv, mask)
            elif backend == "jax" and _jax_on_cpu():
                attended = _attend_token_major(qkv, mask)
            else:
                attended = ops.dot_product_attention(
                    qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], mask=mask
                )
        attended = ops.reshape(
            attended, (batch, length, self.num_heads * self.head_dim)
        )
        return dense(self.proj, attended)

    def torch_inference_call(
        self, inputs, key_padding_mask=None, value_only=False
    ):
        """The fused PyTorch inference path of `call` (same arguments)."""
        import torch

        batch, length, width = inputs.shape
        qkv = torch_linear(self.qkv, inputs).view(
            batch, length, 3, self.num_heads, self.head_dim
        )
        if value_only:
            return torch_linear(self.proj, qkv[:, :, 2].reshape(inputs.shape))
        # (3, B, heads, T, head_dim) views: no copy.
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        mask = None
        if key_padding_mask is not None:
            mask = torch.as_tensor(
                key_padding_mask, dtype=torch.bool, device=inputs.device
            )
            # As in `call`: an all-padding text attends everywhere.
            mask = mask | ~mask.any(dim=-1, keepdim=True)
            mask = mask[:, None, None, :]
        attended = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask
        )
        # (B, heads, T, head_dim) -> (B, T, width); the CPU flash kernel
        # already lays its output out as (B, T, heads, head_dim).
        attended = attended.transpose(1, 2).reshape(batch, length, width)
        return torch_linear(self.proj, attended)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "use_bias": self.use_bias})
        return config



def _jax_on_cpu():
    import jax

    return jax.default_backend() == "cpu"


def _attend_token_major(qkv, mask=None):
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
    total = ops.expand_dims(ops.transpose(ops.sum(weights, axis=-1), (0, 2, 1)), -1)
    attended = ops.einsum(
        "bhts,bshd->bthd", ops.cast(weights, value.dtype), value
    )
    return attended / ops.cast(total, attended.dtype)


def _attend_tensorflow(qkv, mask=None):
    """Softmax attention in TensorFlow ops: `tf.matmul` with a transposed
    key and the fused `tf.nn.softmax`, which TensorFlow's oneDNN kernels run
    faster than einsums and separate softmax steps. Same arguments and
    result as `_attend_token_major`."""
    import tensorflow as tf

    head_dim = qkv.shape[-1]
    query, key, value = tf.unstack(tf.transpose(qkv, (2, 0, 3, 1, 4)))
    logits = tf.matmul(query, key, transpose_b=True)
    logits = tf.cast(logits * tf.cast(head_dim**-0.5, logits.dtype), "float32")
    if mask is not None:
        logits = tf.where(mask, logits, tf.constant(-1e30, "float32"))
    weights = tf.cast(tf.nn.softmax(logits, axis=-1), value.dtype)
    return tf.transpose(tf.matmul(weights, value), (0, 2, 1, 3))
