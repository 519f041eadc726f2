"""Per-channel residual scaling (LayerScale, CaiT / DINOv2)."""

import keras


@keras.saving.register_keras_serializable(package="keras_tips")
class LayerScale(keras.layers.Layer):
    """Multiplies its input by a learned per-channel vector `gamma`.

    LayerScale keeps the residual branches of a deep ViT close to zero at
    initialisation, which is what lets DINOv2-style towers train stably.

    Args:
        init_value: float. Initial value of every entry of `gamma`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    layer = LayerScale(init_value=1e-5)
    y = layer(keras.ops.ones((2, 5, 8)))  # all entries 1e-5
    ```
    """

    def __init__(self, init_value=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        return inputs * keras.ops.cast(self.gamma, inputs.dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"init_value": self.init_value})
        return config
