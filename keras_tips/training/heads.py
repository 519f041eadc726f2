"""Projection heads of the self-supervised (DINO / iBOT) objectives."""

import keras
from keras import ops

from keras_tips.layers.contrastive_head import l2_normalize


@keras.saving.register_keras_serializable(package="keras_tips")
class DINOHead(keras.layers.Layer):
    """DINO projection head: MLP, bottleneck, L2 norm, prototype scores.

    The features go through `num_layers` dense layers (GELU between them;
    the last one maps to `bottleneck_dim` without activation), are
    L2-normalised, and are scored against `num_prototypes` prototype vectors
    by a weight-normalised linear layer without bias. The weight norm has its
    gain fixed to 1: every prototype (column of the `(bottleneck_dim,
    num_prototypes)` matrix) is rescaled to unit norm inside `call`, so the
    logits are cosines in [-1, 1].

    Works on any leading shape, e.g. CLS tokens (B, D) or patch tokens
    (B, N, D).

    Args:
        num_prototypes: int. Number of prototypes K (65,536 in DINOv2).
        hidden_dim: int. Width of the hidden MLP layers.
        bottleneck_dim: int. Width of the normalised bottleneck.
        num_layers: int >= 1. Number of dense layers before the bottleneck
            normalisation (1 maps the input straight to the bottleneck).
        kernel_initializer: initializer of the dense kernels and prototypes.
        epsilon: float. Floor of the squared norms in both normalisations.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    head = DINOHead(num_prototypes=1024, hidden_dim=256, bottleneck_dim=64)
    cls_logits = head(keras.ops.ones((8, 384)))  # (8, 1024)
    patch_logits = head(keras.ops.ones((8, 256, 384)))  # (8, 256, 1024)
    ```
    """

    def __init__(
        self,
        num_prototypes,
        hidden_dim=2048,
        bottleneck_dim=256,
        num_layers=3,
        kernel_initializer=None,
        epsilon=1e-12,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_layers) < 1:
            raise ValueError(
                f"`num_layers` must be at least 1. Received: {num_layers}"
            )
        self.num_prototypes = int(num_prototypes)
        self.hidden_dim = int(hidden_dim)
        self.bottleneck_dim = int(bottleneck_dim)
        self.num_layers = int(num_layers)
        if kernel_initializer is None:
            kernel_initializer = keras.initializers.TruncatedNormal(stddev=0.02)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.epsilon = float(epsilon)
        self.mlp_layers = []
        for index in range(self.num_layers):
            last = index == self.num_layers - 1
            self.mlp_layers.append(
                keras.layers.Dense(
                    self.bottleneck_dim if last else self.hidden_dim,
                    activation=None if last else "gelu",
                    kernel_initializer=self.kernel_initializer,
                    bias_initializer="zeros",
                    dtype=self.dtype_policy,
                    name=f"mlp_{index}",
                )
            )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.mlp_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.prototypes = self.add_weight(
            name="prototypes",
            shape=(self.bottleneck_dim, self.num_prototypes),
            initializer=self.kernel_initializer,
        )
        self.built = True

    def normalized_prototypes(self):
        """The prototype matrix with every column scaled to unit L2 norm."""
        prototypes = ops.cast(self.prototypes, "float32")
        return l2_normalize(prototypes, axis=0, epsilon=self.epsilon)

    def call(self, inputs):
        x = inputs
        for layer in self.mlp_layers:
            x = layer(x)
        x = l2_normalize(ops.cast(x, "float32"), epsilon=self.epsilon)
        x = ops.cast(x, self.compute_dtype)
        prototypes = ops.cast(self.normalized_prototypes(), self.compute_dtype)
        return ops.matmul(x, prototypes)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1] + (self.num_prototypes,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_prototypes": self.num_prototypes,
                "hidden_dim": self.hidden_dim,
                "bottleneck_dim": self.bottleneck_dim,
                "num_layers": self.num_layers,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "epsilon": self.epsilon,
            }
        )
        return config
