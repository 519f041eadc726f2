"""Multi-head self-attention with a fused query/key/value projection."""

import keras
from keras import ops

from keras_tips import backend


@keras.saving.register_keras_serializable(package="keras_tips")
class FusedQKVAttention(keras.layers.Layer):
    """Self-attention whose Q, K and V come from one dense layer.

    One `(D, 3D)` matmul instead of three is both the layout of the official
    checkpoints (`attn.qkv` in the image tower, `in_proj_weight` in the text
    tower) and faster. The projections and the attention itself run through
    `keras_tips.backend` (`dense`, `attention`), in the form each backend
    computes fastest.

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
        batch, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        qkv = ops.reshape(
            backend.dense(self.qkv, inputs),
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
            attended = backend.attention(qkv, mask)
        attended = ops.reshape(
            attended, (batch, length, self.num_heads * self.head_dim)
        )
        return backend.dense(self.proj, attended)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads, "use_bias": self.use_bias})
        return config
