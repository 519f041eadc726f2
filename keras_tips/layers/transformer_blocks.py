"""Pre-norm transformer blocks of the two TIPS towers."""

import keras

from keras_tips import backend
from keras_tips.layers.attention import FusedQKVAttention
from keras_tips.layers.drop_path import DropPath
from keras_tips.layers.layer_scale import LayerScale
from keras_tips.layers.mlp import MLP
from keras_tips.layers.mlp import FusedSwiGLU


@keras.saving.register_keras_serializable(package="keras_tips")
class _TokenRematBlock(keras.layers.Layer):
    """A transformer block that `keras.RematScope` rematerialises (recomputes
    in the backward pass) with respect to its tokens only.

    Keras' own rematerialisation passes every argument of `call` through the
    checkpoint: JAX then traces the `training` flag and cannot branch on it,
    TensorFlow graphs reject keyword arguments to a custom gradient and a
    boolean padding mask as a differentiable input. Here the other arguments
    are closed over, so only the float tokens (the first argument) cross the
    checkpoint, on every backend.
    """

    def rematerialized_call(self, layer_call, *args, **kwargs):
        if super().rematerialized_call(layer_call, *args, **kwargs) is layer_call:
            return layer_call  # Not selected by the active RematScope.

        def call(tokens, *call_args, **call_kwargs):
            return keras.remat(
                lambda inputs: layer_call(inputs, *call_args, **call_kwargs)
            )(tokens)

        return call


@keras.saving.register_keras_serializable(package="keras_tips")
class VisionTransformerBlock(_TokenRematBlock):
    """DINOv2-style block: `x + LS(attn(LN(x)))`, then `x + LS(ffn(LN(x)))`.

    Where the backend has a fused inference forward of the whole block
    (`keras_tips.backend.fused_vision_block`: PyTorch inference on the CPU),
    that runs instead of the layers one by one.

    Args:
        num_heads: int. Attention heads.
        intermediate_dim: int. Hidden width of the feed-forward network.
        ffn_type: `"mlp"` (exact GELU) or `"swiglu"` (fused SwiGLU, g/14).
        layer_scale_init_value: float. Initial LayerScale value.
        layer_norm_epsilon: float. LayerNorm epsilon (1e-6 in TIPS).
        drop_path_rate: float. Stochastic-depth rate of both branches.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    block = VisionTransformerBlock(num_heads=4, intermediate_dim=256)
    y = block(keras.ops.ones((2, 18, 64)))
    ```
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        ffn_type="mlp",
        layer_scale_init_value=1e-5,
        layer_norm_epsilon=1e-6,
        drop_path_rate=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if ffn_type not in ("mlp", "swiglu"):
            raise ValueError(
                f"`ffn_type` must be 'mlp' or 'swiglu'. Received: {ffn_type!r}"
            )
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.ffn_type = ffn_type
        self.layer_scale_init_value = layer_scale_init_value
        self.layer_norm_epsilon = layer_norm_epsilon
        self.drop_path_rate = drop_path_rate
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="norm1"
        )
        self.attention = FusedQKVAttention(num_heads, dtype=policy, name="attn")
        self.layer_scale1 = LayerScale(
            layer_scale_init_value, dtype=policy, name="ls1"
        )
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="norm2"
        )
        if ffn_type == "mlp":
            self.ffn = MLP(intermediate_dim, "gelu", dtype=policy, name="mlp")
        else:
            self.ffn = FusedSwiGLU(intermediate_dim, dtype=policy, name="mlp")
        self.layer_scale2 = LayerScale(
            layer_scale_init_value, dtype=policy, name="ls2"
        )
        self.drop_path = DropPath(drop_path_rate, dtype=policy, name="drop_path")

    def build(self, input_shape):
        for layer in (
            self.norm1,
            self.attention,
            self.layer_scale1,
            self.norm2,
            self.ffn,
            self.layer_scale2,
        ):
            layer.build(input_shape)

    def call(self, inputs, training=None, value_only=False):
        fused = backend.fused_vision_block(
            self, inputs, training=training, value_only=value_only
        )
        if fused is not None:
            return fused
        attended = self.attention(self.norm1(inputs), value_only=value_only)
        x = inputs + self.drop_path(self.layer_scale1(attended), training=training)
        x = x + self.drop_path(
            self.layer_scale2(self.ffn(self.norm2(x))), training=training
        )
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "ffn_type": self.ffn_type,
                "layer_scale_init_value": self.layer_scale_init_value,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "drop_path_rate": self.drop_path_rate,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class TextTransformerBlock(_TokenRematBlock):
    """Bidirectional pre-norm block with a key-padding mask and ReLU MLP.

    The official text tower also zeroes the MLP output at padding positions;
    that cannot change any output (padding tokens are never attended to and
    never pooled), so it is skipped here.

    Args:
        num_heads: int. Attention heads.
        intermediate_dim: int. Hidden width of the MLP.
        layer_norm_epsilon: float. LayerNorm epsilon (1e-5 in TIPS).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    block = TextTransformerBlock(num_heads=4, intermediate_dim=256)
    y = block(keras.ops.ones((2, 16, 64)), keras.ops.ones((2, 16), "bool"))
    ```
    """

    def __init__(
        self, num_heads, intermediate_dim, layer_norm_epsilon=1e-5, **kwargs
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.layer_norm_epsilon = layer_norm_epsilon
        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="ln_1"
        )
        self.attention = FusedQKVAttention(num_heads, dtype=policy, name="attn")
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="ln_2"
        )
        self.mlp = MLP(intermediate_dim, "relu", dtype=policy, name="mlp")

    def build(self, input_shape):
        for layer in (self.norm1, self.attention, self.norm2, self.mlp):
            layer.build(input_shape)

    def call(self, inputs, padding_mask):
        x = inputs + self.attention(
            self.norm1(inputs), key_padding_mask=padding_mask
        )
        return x + self.mlp(self.norm2(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
