"""The TIPS image tower: a DINOv2-style ViT/14 with two CLS tokens."""

import operator

import keras
from keras import ops

from keras_tips import backend
from keras_tips.layers.positions import SinusoidalPositionTableInitializer
from keras_tips.layers.positions import resize_position_grid
from keras_tips.layers.transformer_blocks import VisionTransformerBlock


POSITION_INITIALIZERS = ("truncated_normal", "sinusoidal")


def _as_tuple(value):
    return value if isinstance(value, tuple) else (value,)


def _pixel_statistic(name, value):
    """A float, or a tuple of 3 per-channel floats (lists from configs)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 3:
            raise ValueError(
                f"`{name}` must be a float or 3 per-channel floats. "
                f"Received: {value}"
            )
        return tuple(float(v) for v in value)
    return float(value)


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSVisionEncoder(keras.layers.Layer):
    """ViT image encoder with two CLS tokens, LayerScale and a mask token.

    Tokens are laid out as `[CLS1, CLS2, patch_1 ... patch_N]`. CLS1 gets the
    first learned position embedding; CLS2 (stored as a "register" token in the
    official checkpoints) gets none; the patch position embeddings are learned
    on a `position_grid_size` x `position_grid_size` grid and resized
    (bilinear, antialiased) to the patch grid of each input, so any image
    whose sides are multiples of `patch_size` can be encoded, non-square ones
    too. An optional boolean patch mask replaces patch embeddings by the
    learned mask token before positions are added (masked image modelling).

    Args:
        hidden_dim: int. Token width.
        num_layers: int. Number of transformer blocks.
        num_heads: int. Attention heads per block.
        intermediate_dim: int. Feed-forward hidden width (for `"swiglu"`, the
            width of each gated half).
        patch_size: int. Side of the square patches (14 for TIPS).
        position_grid_size: int. Side of the learned position-embedding grid.
        ffn_type: `"mlp"` (exact GELU) or `"swiglu"` (fused SwiGLU, g/14).
        layer_scale_init_value: float. Initial LayerScale value.
        layer_norm_epsilon: float. LayerNorm epsilon (1e-6).
        drop_path_rate: float. Stochastic depth of the last block; earlier
            blocks get linearly smaller rates.
        pixel_mean: float or 3 floats. Subtracted from the [0, 1] pixels
            before the patch embedding (0 for the official checkpoints,
            which take [0, 1] pixels as they are).
        pixel_std: float or 3 floats. Divides the pixels after
            `pixel_mean` (1 for the official checkpoints). A tower trained
            from scratch learns shapes far sooner from centred pixels
            (`pixel_mean=0.5`; `recipes/tiny_shapes.py` also sets
            `pixel_std=0.5`) than from [0, 1] ones, whose common offset
            dominates every patch embedding (`benchmarks/shape_learning.py`
            measures it). Callers pass [0, 1] images either way.
        position_initializer: `"truncated_normal"` (std 0.02, as DINOv2) or
            `"sinusoidal"` (2-D sinusoids, see
            `SinusoidalPositionTableInitializer`) for the learned position
            table. Only training from scratch sees the difference.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    encoder = TIPSVisionEncoder(
        hidden_dim=64, num_layers=2, num_heads=4, intermediate_dim=256,
        position_grid_size=4,
    )
    outputs = encoder(keras.ops.ones((2, 56, 84, 3)))
    outputs["cls_1"].shape  # (2, 64)
    outputs["patches"].shape  # (2, 24, 64): a 4 x 6 patch grid
    ```
    """

    def __init__(
        self,
        hidden_dim,
        num_layers,
        num_heads,
        intermediate_dim,
        patch_size=14,
        position_grid_size=16,
        ffn_type="mlp",
        layer_scale_init_value=1e-5,
        layer_norm_epsilon=1e-6,
        drop_path_rate=0.0,
        pixel_mean=0.0,
        pixel_std=1.0,
        position_initializer="truncated_normal",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pixel_mean = _pixel_statistic("pixel_mean", pixel_mean)
        self.pixel_std = _pixel_statistic("pixel_std", pixel_std)
        if any(value <= 0 for value in _as_tuple(self.pixel_std)):
            raise ValueError(
                f"`pixel_std` must be > 0. Received: {pixel_std}"
            )
        if position_initializer not in POSITION_INITIALIZERS:
            raise ValueError(
                "`position_initializer` must be one of "
                f"{POSITION_INITIALIZERS}. Received: {position_initializer!r}"
            )
        self.position_initializer = position_initializer
        self.hidden_dim = int(hidden_dim)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.intermediate_dim = int(intermediate_dim)
        self.patch_size = int(patch_size)
        self.position_grid_size = int(position_grid_size)
        self.ffn_type = ffn_type
        self.layer_scale_init_value = layer_scale_init_value
        self.layer_norm_epsilon = layer_norm_epsilon
        self.drop_path_rate = float(drop_path_rate)

        policy = self.dtype_policy
        self.patch_embedding = keras.layers.Conv2D(
            self.hidden_dim,
            kernel_size=self.patch_size,
            strides=self.patch_size,
            padding="valid",
            data_format="channels_last",
            dtype=policy,
            name="patch_embed",
        )
        self.blocks = []
        for index in range(self.num_layers):
            rate = self.drop_path_rate * index / max(self.num_layers - 1, 1)
            self.blocks.append(
                VisionTransformerBlock(
                    num_heads=self.num_heads,
                    intermediate_dim=self.intermediate_dim,
                    ffn_type=ffn_type,
                    layer_scale_init_value=layer_scale_init_value,
                    layer_norm_epsilon=layer_norm_epsilon,
                    drop_path_rate=rate,
                    dtype=policy,
                    name=f"blocks_{index}",
                )
            )
        self.norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=policy, name="norm"
        )

    def build(self, input_shape=None):
        dim = self.hidden_dim
        token_init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.cls_token = self.add_weight(
            name="cls_token", shape=(1, 1, dim), initializer=token_init
        )
        self.register_token = self.add_weight(
            name="register_token", shape=(1, 1, dim), initializer=token_init
        )
        self.mask_token = self.add_weight(
            name="mask_token", shape=(1, dim), initializer="zeros"
        )
        self.position_embedding = self.add_weight(
            name="position_embedding",
            shape=(1, 1 + self.position_grid_size**2, dim),
            initializer=(
                SinusoidalPositionTableInitializer()
                if self.position_initializer == "sinusoidal"
                else token_init
            ),
        )
        self.patch_embedding.build((None, None, None, 3))
        for block in self.blocks:
            block.build((None, None, dim))
        self.norm.build((None, None, dim))
        if not self.trainable:
            # A layer deserialised frozen is built afterwards: propagate the
            # flag to the sub-layers created here.
            self.trainable = False
        self.built = True

    def _check_static_shape(self, shape):
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(
                "Expected images of shape (batch, height, width, 3). "
                f"Received shape {tuple(shape)}."
            )
        for name, side in (("height", shape[1]), ("width", shape[2])):
            if side is not None and side % self.patch_size:
                raise ValueError(
                    f"The image {name} ({side}) is not a multiple of the "
                    f"patch size {self.patch_size}. Resize or crop the image "
                    f"to a multiple of {self.patch_size} first."
                )

    def _normalize_pixels(self, images):
        if self.pixel_mean == 0.0 and self.pixel_std == 1.0:
            return ops.cast(images, self.compute_dtype)
        # In float32, then cast: bfloat16 pixels lose precision otherwise.
        images = ops.cast(images, "float32")
        mean = ops.convert_to_tensor(self.pixel_mean, "float32")
        std = ops.convert_to_tensor(self.pixel_std, "float32")
        return ops.cast((images - mean) / std, self.compute_dtype)

    def embed(self, images, patch_mask=None):
        """Turns images into the `[CLS1, CLS2, patches]` token sequence."""
        self._check_static_shape(images.shape)
        images = self._normalize_pixels(images)
        shape = ops.shape(images)
        batch = shape[0]
        grid_h = shape[1] // self.patch_size
        grid_w = shape[2] // self.patch_size
        patches = backend.fused_patch_embedding(self.patch_embedding, images)
        if patches is None:
            patches = ops.reshape(
                self.patch_embedding(images),
                (batch, grid_h * grid_w, self.hidden_dim),
            )
        if patch_mask is not None:
            mask_token = ops.cast(self.mask_token, patches.dtype)[None]
            patches = ops.where(
                ops.cast(patch_mask, "bool")[..., None], mask_token, patches
            )
        positions = ops.cast(self.position_embedding, patches.dtype)
        size = self.position_grid_size
        grid = ops.reshape(positions[:, 1:], (1, size, size, self.hidden_dim))
        grid = resize_position_grid(grid, grid_h, grid_w)
        patches = patches + ops.reshape(
            grid, (1, grid_h * grid_w, self.hidden_dim)
        )
        cls_1 = ops.cast(self.cls_token, patches.dtype) + positions[:, :1]
        cls_2 = ops.cast(self.register_token, patches.dtype)
        ones = ops.ones((batch, 1, 1), dtype=patches.dtype)
        return ops.concatenate([cls_1 * ones, cls_2 * ones, patches], axis=1)

    def _split(self, tokens):
        return {
            "cls_1": tokens[:, 0],
            "cls_2": tokens[:, 1],
            "patches": tokens[:, 2:],
        }

    def call(
        self,
        images,
        patch_mask=None,
        training=None,
        return_intermediates=False,
        return_prenorm=False,
        return_value_patches=False,
    ):
        """Encodes images.

        Args:
            images: float (B, H, W, 3) in [0, 1]; H and W multiples of 14.
            patch_mask: optional bool (B, N), True for patches to replace by
                the mask token (row-major patch order).
            training: bool. Enables stochastic depth.
            return_intermediates: bool, or a sequence of block indices
                (0-based; repeats allowed). Also return the output of every
                block (`True`) or of the blocks listed, in that order, after
                the final LayerNorm: `"intermediate_cls_1"`,
                `"intermediate_cls_2"` (B, L, D), `"intermediate_patches"`
                (B, L, N, D), L the number of blocks returned.
            return_prenorm: bool. Also return `"prenorm_tokens"`
                (B, 2 + N, D), the tokens before the final LayerNorm.
            return_value_patches: bool. Also return `"value_patches"`: the
                normalised patch tokens of a last block whose attention is
                replaced by each token's own value embedding (sharper maps
                for zero-shot segmentation).

        Returns:
            A dict with `"cls_1"`, `"cls_2"` (B, D) and `"patches"` (B, N, D),
            all after the final LayerNorm, plus the optional entries above.
        """
        selected = self.intermediate_blocks(return_intermediates)
        x = self.embed(images, patch_mask)
        normalised = {}
        last_input = x
        for index, block in enumerate(self.blocks):
            last_input = x
            x = block(x, training=training)
            if index in selected:
                normalised[index] = self.norm(x)
        outputs = self._split(self.norm(x))
        if selected:
            stacked = ops.stack([normalised[i] for i in selected], axis=1)
            outputs["intermediate_cls_1"] = stacked[:, :, 0]
            outputs["intermediate_cls_2"] = stacked[:, :, 1]
            outputs["intermediate_patches"] = stacked[:, :, 2:]
        if return_prenorm:
            outputs["prenorm_tokens"] = x
        if return_value_patches:
            value_tokens = self.blocks[-1](
                last_input, training=training, value_only=True
            )
            outputs["value_patches"] = self.norm(value_tokens)[:, 2:]
        return outputs

    def compute_output_spec(self, images, patch_mask=None, **kwargs):
        self._check_static_shape(images.shape)
        batch, height, width = images.shape[:3]
        if height is None or width is None:
            num_patches = None
        else:
            num_patches = (height // self.patch_size) * (
                width // self.patch_size
            )
        dim, dtype = self.hidden_dim, self.compute_dtype
        spec = {
            "cls_1": keras.KerasTensor((batch, dim), dtype),
            "cls_2": keras.KerasTensor((batch, dim), dtype),
            "patches": keras.KerasTensor((batch, num_patches, dim), dtype),
        }
        depth = len(self.intermediate_blocks(kwargs.get("return_intermediates")))
        if depth:
            for key in ("intermediate_cls_1", "intermediate_cls_2"):
                spec[key] = keras.KerasTensor((batch, depth, dim), dtype)
            spec["intermediate_patches"] = keras.KerasTensor(
                (batch, depth, num_patches, dim), dtype
            )
        if kwargs.get("return_prenorm"):
            tokens = None if num_patches is None else num_patches + 2
            spec["prenorm_tokens"] = keras.KerasTensor(
                (batch, tokens, dim), dtype
            )
        if kwargs.get("return_value_patches"):
            spec["value_patches"] = keras.KerasTensor(
                (batch, num_patches, dim), dtype
            )
        return spec

    def intermediate_blocks(self, return_intermediates):
        """The block indices that `return_intermediates` asks for, in order.

        Args:
            return_intermediates: a bool or a sequence of block indices.

        Returns:
            A tuple of ints: every block for `True`, none for `False`/`None`.
        """
        if return_intermediates is None or isinstance(return_intermediates, bool):
            return tuple(range(self.num_layers)) if return_intermediates else ()
        try:
            blocks = tuple(operator.index(i) for i in return_intermediates)
        except TypeError:
            raise ValueError(
                "`return_intermediates` must be a bool or a sequence of block "
                f"indices; received {return_intermediates!r}."
            ) from None
        outside = [i for i in blocks if not 0 <= i < self.num_layers]
        if outside:
            raise ValueError(
                f"Block indices {outside} are out of range: this encoder has "
                f"{self.num_layers} blocks (0 to {self.num_layers - 1})."
            )
        return blocks

    def num_patches(self, height, width):
        """Number of patch tokens for an image of the given size."""
        return (height // self.patch_size) * (width // self.patch_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "patch_size": self.patch_size,
                "position_grid_size": self.position_grid_size,
                "ffn_type": self.ffn_type,
                "layer_scale_init_value": self.layer_scale_init_value,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "drop_path_rate": self.drop_path_rate,
                "pixel_mean": self.pixel_mean,
                "pixel_std": self.pixel_std,
                "position_initializer": self.position_initializer,
            }
        )
        return config

