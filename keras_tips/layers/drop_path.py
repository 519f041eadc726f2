"""Stochastic depth: drops a whole residual branch per example."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_tips")
class DropPath(keras.layers.Layer):
    """Zeroes the residual branch of random examples during training.

    Kept examples are rescaled by `1 / (1 - rate)` so the expectation is
    unchanged; at inference the layer is the identity.

    Args:
        rate: float in [0, 1). Probability of dropping the branch.
        seed: optional int, seed of the layer's `keras.random.SeedGenerator`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    drop = DropPath(rate=0.1)
    y = drop(keras.ops.ones((4, 3, 8)), training=True)
    ```
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"`rate` must be in [0, 1). Received: rate={rate}")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        batch = ops.shape(inputs)[0]
        shape = (batch,) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(
            shape, dtype=inputs.dtype, seed=self.seed_generator
        )
        return inputs * ops.floor(keep + noise) / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
