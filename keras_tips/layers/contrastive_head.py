"""Learned temperatures and cosine logits of the image-text alignment."""

import math

import keras
from keras import ops


def l2_normalize(x, axis=-1, epsilon=1e-12):
    """Scales `x` to unit L2 norm along `axis`; zero vectors stay zero.

    The squared norm is floored at `epsilon`, so the result (and its
    gradient) stays finite for a zero vector. This is the one L2
    normalisation of backend tensors in the package: the contrastive logits
    and loss, KoLeo, the DINO head and `TIPSModel.normalize` use it.
    (`keras_tips.evaluation` normalises NumPy arrays with its own NumPy
    function, so that metrics do not depend on the backend.)

    Args:
        x: tensor or array.
        axis: int. The axis to normalise.
        epsilon: float. Floor of the squared norm.

    Example:
    ```python
    l2_normalize(keras.ops.convert_to_tensor([[3.0, 4.0]]))  # [[0.6, 0.8]]
    ```
    """
    x = ops.convert_to_tensor(x)
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(squared, epsilon))


def cosine_logits(image_embeddings, text_embeddings, temperature):
    """`cos(x_i, y_j) / temperature` for every image i and text j, in float32.

    The logits of the image-text alignment, shared by `ContrastiveHead`
    (zero-shot inference) and the contrastive loss (training).

    Args:
        image_embeddings: (B_images, D) tensor.
        text_embeddings: (B_texts, D) tensor.
        temperature: positive scalar (float or tensor).

    Returns:
        float32 (B_images, B_texts) tensor.

    Example:
    ```python
    logits = cosine_logits(image_embeddings, text_embeddings, 0.01)
    ```
    """
    images = l2_normalize(ops.cast(image_embeddings, "float32"))
    texts = l2_normalize(ops.cast(text_embeddings, "float32"))
    return ops.matmul(images, ops.transpose(texts)) / ops.cast(
        temperature, "float32"
    )


@keras.saving.register_keras_serializable(package="keras_tips")
class ContrastiveHead(keras.layers.Layer):
    """Holds the two learned temperatures and computes cosine logits.

    TIPS aligns CLS1 with web captions and CLS2 with synthetic captions, each
    with its own temperature. Temperatures are stored as logarithms (stable to
    learn) and clipped to `[min_temperature, max_temperature]` when read.
    The released checkpoints store a single temperature; it initialises both.

    Args:
        temperature: float. Initial temperature of both alignments.
        min_temperature: float. Lower clip.
        max_temperature: float. Upper clip.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    head = ContrastiveHead(temperature=0.01)
    logits = head(image_embeddings, text_embeddings)  # (B_images, B_texts)
    ```
    """

    def __init__(
        self,
        temperature=0.01,
        min_temperature=1e-3,
        max_temperature=0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 < min_temperature <= temperature <= max_temperature:
            raise ValueError(
                "Expected 0 < min_temperature <= temperature <= "
                f"max_temperature. Received: {min_temperature}, {temperature}, "
                f"{max_temperature}."
            )
        self.initial_temperature = float(temperature)
        self.min_temperature = float(min_temperature)
        self.max_temperature = float(max_temperature)

    def build(self, *args, **kwargs):
        init = keras.initializers.Constant(math.log(self.initial_temperature))
        self.log_temperature = self.add_weight(
            name="log_temperature", shape=(), initializer=init
        )
        self.log_synthetic_temperature = self.add_weight(
            name="log_synthetic_temperature", shape=(), initializer=init
        )
        self.built = True

    def _clipped(self, log_value):
        return ops.clip(
            ops.exp(ops.cast(log_value, "float32")),
            self.min_temperature,
            self.max_temperature,
        )

    @property
    def temperature(self):
        """Temperature of the CLS1 / web-caption alignment."""
        return self._clipped(self.log_temperature)

    @property
    def synthetic_temperature(self):
        """Temperature of the CLS2 / synthetic-caption alignment."""
        return self._clipped(self.log_synthetic_temperature)

    def set_temperature(self, temperature):
        """Sets both temperatures (e.g. from an official checkpoint)."""
        value = math.log(float(temperature))
        self.log_temperature.assign(value)
        self.log_synthetic_temperature.assign(value)

    def call(self, image_embeddings, text_embeddings, synthetic=False):
        """Returns cosine(image, text) / temperature, (B_images, B_texts)."""
        temperature = self.synthetic_temperature if synthetic else self.temperature
        return cosine_logits(image_embeddings, text_embeddings, temperature)

    def compute_output_spec(self, image_embeddings, text_embeddings, **kwargs):
        return keras.KerasTensor(
            (image_embeddings.shape[0], text_embeddings.shape[0]), "float32"
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "temperature": self.initial_temperature,
                "min_temperature": self.min_temperature,
                "max_temperature": self.max_temperature,
            }
        )
        return config
