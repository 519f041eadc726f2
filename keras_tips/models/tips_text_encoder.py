"""The TIPS text tower: a bidirectional transformer with masked mean pooling."""

import keras
from keras import ops

from keras_tips.layers.positions import sinusoidal_positions
from keras_tips.layers.transformer_blocks import TextTransformerBlock


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSTextEncoder(keras.layers.Layer):
    """Bidirectional text transformer with masked mean pooling.

    Token embeddings are scaled by `sqrt(hidden_dim)` and summed with fixed
    sinusoidal positions (`[sin | cos]` halves); the blocks attend in both
    directions but never to padding; after a final LayerNorm the non-padding
    tokens are averaged. There is no projection: the pooled vector is the text
    embedding. A text made only of padding (the empty string) gives zeros.

    Args:
        vocabulary_size: int. SentencePiece vocabulary size (32,000).
        hidden_dim: int. Token width.
        num_layers: int. Number of transformer blocks.
        num_heads: int. Attention heads per block.
        intermediate_dim: int. ReLU MLP hidden width.
        max_sequence_length: int. Longest token sequence (64).
        layer_norm_epsilon: float. LayerNorm epsilon (1e-5).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    encoder = TIPSTextEncoder(
        vocabulary_size=96, hidden_dim=64, num_layers=2, num_heads=4,
        intermediate_dim=256, max_sequence_length=16,
    )
    token_ids = keras.ops.array([[5, 9, 2, 0, 0, 0, 0, 0]])
    embeddings = encoder(token_ids, token_ids != 0)  # (1, 64)
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        hidden_dim,
        num_layers,
        num_heads,
        intermediate_dim,
        max_sequence_length=64,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.max_sequence_length = int(max_sequence_length)
        self.layer_norm_epsilon = layer_norm_epsilon
        policy = self.dtype_policy
        self.token_embedding = keras.layers.Embedding(
            self.vocabulary_size,
            self.hidden_dim,
            embeddings_initializer=keras.initializers.RandomNormal(
                stddev=self.hidden_dim**-0.5
            ),
            dtype=policy,
            name="token_embedding",
        )
        self.blocks = [
            TextTransformerBlock(
                num_heads=self.num_heads,
                intermediate_dim=self.intermediate_dim,
                layer_norm_epsilon=layer_norm_epsilon,
                dtype=policy,
                name=f"resblocks_{index}",
            )
            for index in range(self.num_layers)
        ]
        self.norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="ln_final"
        )

    def build(self, token_ids_shape=None, padding_mask_shape=None):
        self.token_embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, self.hidden_dim))
        self.norm.build((None, None, self.hidden_dim))
        if not self.trainable:
            # A layer deserialised frozen is built afterwards: propagate the
            # flag to the sub-layers created here.
            self.trainable = False
        self.built = True

    def call(self, token_ids, padding_mask):
        """Embeds token sequences.

        Args:
            token_ids: int (B, T) SentencePiece ids, T <= max_sequence_length.
            padding_mask: bool (B, T), True for real tokens.

        Returns:
            (B, hidden_dim) text embeddings.
        """
        length = token_ids.shape[1]
        if length is not None and length > self.max_sequence_length:
            raise ValueError(
                f"Token sequences of length {length} exceed the text "
                f"encoder's max_sequence_length={self.max_sequence_length}."
            )
        padding_mask = ops.cast(padding_mask, "bool")
        x = self.token_embedding(token_ids)
        x = x * ops.cast(self.hidden_dim**0.5, x.dtype)
        positions = sinusoidal_positions(ops.shape(token_ids)[1], self.hidden_dim)
        x = x + ops.cast(positions, x.dtype)[None]
        for block in self.blocks:
            x = block(x, padding_mask)
        x = self.norm(x)
        keep = ops.cast(padding_mask, x.dtype)[..., None]
        total = ops.sum(ops.where(keep > 0, x, ops.zeros_like(x)), axis=1)
        # The official pooling adds 1e-8 to the count, so an all-padding text
        # pools to exactly zero instead of 0 / 0.
        count = ops.sum(keep, axis=1) + ops.cast(1e-8, x.dtype)
        return total / count

    def compute_output_spec(self, token_ids, padding_mask=None):
        return keras.KerasTensor(
            (token_ids.shape[0], self.hidden_dim), self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "max_sequence_length": self.max_sequence_length,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
