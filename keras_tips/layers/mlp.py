"""Feed-forward blocks: the two-layer MLP and the fused SwiGLU of g/14.

The dense layers run through `keras_tips.backend.dense`, which computes
`activation(dense(x))` in the running backend's fastest form.
"""

import keras
from keras import ops

from keras_tips import backend

_ACTIVATIONS = ("gelu", "relu")


@keras.saving.register_keras_serializable(package="keras_tips")
class MLP(keras.layers.Layer):
    """Two dense layers with an activation in between.

    The image tower uses the exact (erf) GELU, the text tower ReLU.

    Args:
        intermediate_dim: int. Width of the hidden layer.
        activation: `"gelu"` (exact, not the tanh approximation) or `"relu"`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    mlp = MLP(intermediate_dim=256, activation="gelu")
    y = mlp(keras.ops.ones((2, 5, 64)))  # (2, 5, 64)
    ```
    """

    def __init__(self, intermediate_dim, activation="gelu", **kwargs):
        super().__init__(**kwargs)
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"`activation` must be one of {_ACTIVATIONS}. "
                f"Received: activation={activation!r}"
            )
        self.intermediate_dim = int(intermediate_dim)
        self.activation = activation

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self.fc1 = keras.layers.Dense(
            self.intermediate_dim, dtype=self.dtype_policy, name="fc1"
        )
        self.fc1.build(input_shape)
        self.fc2 = keras.layers.Dense(
            hidden_dim, dtype=self.dtype_policy, name="fc2"
        )
        self.fc2.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))

    def call(self, inputs):
        hidden = backend.dense(self.fc1, inputs, self.activation)
        return backend.dense(self.fc2, hidden)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class FusedSwiGLU(keras.layers.Layer):
    """SwiGLU feed-forward with the two input projections fused in one matmul.

    `w12` projects to `2 * intermediate_dim`; the first half goes through
    SiLU and gates the second half; `w3` projects back. This is the layout of
    the released g/14 checkpoints (`mlp.w12.*`, `mlp.w3.*`).

    Args:
        intermediate_dim: int. Width of each gated half.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    ffn = FusedSwiGLU(intermediate_dim=256)
    y = ffn(keras.ops.ones((2, 5, 96)))  # (2, 5, 96)
    ```
    """

    def __init__(self, intermediate_dim, **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim = int(intermediate_dim)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self.w12 = keras.layers.Dense(
            2 * self.intermediate_dim, dtype=self.dtype_policy, name="w12"
        )
        self.w12.build(input_shape)
        self.w3 = keras.layers.Dense(
            hidden_dim, dtype=self.dtype_policy, name="w3"
        )
        self.w3.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))

    def call(self, inputs):
        gate, value = ops.split(backend.dense(self.w12, inputs), 2, axis=-1)
        return backend.dense(self.w3, ops.silu(gate) * value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"intermediate_dim": self.intermediate_dim})
        return config


def swiglu_intermediate_dim(hidden_dim, mlp_ratio=4.0):
    """Hidden width of a fused SwiGLU as DINOv2 sizes it: 2/3 of the MLP
    width, rounded up to a multiple of 8 (g/14: 1536 -> 4096)."""
    return (int(hidden_dim * mlp_ratio * 2 / 3) + 7) // 8 * 8
