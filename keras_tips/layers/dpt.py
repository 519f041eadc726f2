"""The building blocks of a DPT decoder (Ranftl et al., "Vision Transformers
for Dense Prediction", 2021), as the TIPS DPT heads use them.

Everything is channels last (NHWC). A DPT decoder takes four levels of ViT
features, each a `(cls, patch_map)` pair, and:

1. reassembles them at four scales (`DPTReassembleBlocks`): a readout
   projection mixes the CLS token into every patch, a 1x1 convolution sets
   the level's width, and the levels are resized to 4x, 2x, 1x and 1/2x the
   patch grid;
2. fuses them from the coarsest level down (`DPTFusionBlock`), each step
   refining with pre-activation residual units (`PreActResidualConvUnit`)
   and upsampling 2x.

A depth head reads its per-pixel bin scores as a distribution over depth
bins (`expected_depth`).
"""

import keras
import numpy as np
from keras import ops

from keras_tips.layers.interpolation import resize_bilinear
from keras_tips.layers.interpolation import spatial_size

READOUT_TYPES = ("project", "ignore")


def depth_bin_centers(min_depth, max_depth, num_bins):
    """The depth bin centres, `linspace(min_depth, max_depth, num_bins)`.

    Computed in float64 and rounded to float32: within a float32 rounding of
    the official `torch.linspace` (whose vectorised CPU kernel rounds
    differently from element to element).

    Args:
        min_depth: float. The first bin centre.
        max_depth: float. The last bin centre.
        num_bins: int. Number of bins.

    Returns:
        A float32 NumPy array of shape (num_bins,).
    """
    return np.linspace(min_depth, max_depth, num_bins).astype("float32")


def expected_depth(scores, bin_centers, min_depth):
    """Depth from per-pixel bin scores, as the official depth decoder reads
    them:

        p_c = (relu(s_c) + min_depth) / sum_c' (relu(s_c') + min_depth)
        depth = sum_c p_c * bin_centers_c

    Args:
        scores: (..., C) bin scores.
        bin_centers: (C,) depth of each bin.
        min_depth: float. The floor that keeps every bin's weight positive.

    Returns:
        (..., 1) depth.

    Example:
    ```python
    depth = expected_depth(scores, depth_bin_centers(0.001, 10.0, 256), 0.001)
    ```
    """
    weights = ops.relu(scores) + ops.cast(min_depth, scores.dtype)
    probabilities = weights / ops.sum(weights, axis=-1, keepdims=True)
    centers = ops.cast(bin_centers, scores.dtype)
    return ops.sum(probabilities * centers, axis=-1, keepdims=True)


def _conv(filters, kernel_size, name, dtype, use_bias=True, strides=1, padding="same"):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        data_format="channels_last",
        dtype=dtype,
        name=name,
    )


@keras.saving.register_keras_serializable(package="keras_tips")
class PreActResidualConvUnit(keras.layers.Layer):
    """Pre-activation residual unit: `x + conv2(relu(conv1(relu(x))))`.

    Both convolutions are 3x3, stride 1, zero padding 1 and have no bias.

    Args:
        channels: int. Width of the input and output.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    unit = PreActResidualConvUnit(channels=16)
    y = unit(keras.ops.ones((2, 8, 6, 16)))  # (2, 8, 6, 16)
    ```
    """

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        policy = self.dtype_policy
        self.conv1 = _conv(self.channels, 3, "conv1", policy, use_bias=False)
        self.conv2 = _conv(self.channels, 3, "conv2", policy, use_bias=False)

    def build(self, input_shape=None):
        shape = (None, None, None, self.channels)
        self.conv1.build(shape)
        self.conv2.build(shape)
        self.built = True

    def call(self, x):
        y = self.conv1(ops.relu(x))
        y = self.conv2(ops.relu(y))
        return x + y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"channels": self.channels})
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class DPTFusionBlock(keras.layers.Layer):
    """One fusion step of a DPT decoder.

    `out_conv(upsample_2x(main_unit(x + residual_unit(skip))))`: the skip
    level (if any) is first resized to the main path's size when the two
    differ (bilinear, `align_corners=False`; only odd patch grids need it),
    refined by its own residual unit and added; the sum is refined, upsampled
    2x (bilinear, `align_corners=True`) and mixed by a 1x1 convolution with
    bias.

    Args:
        channels: int. Width of the features.
        has_residual: bool. Whether the block takes a skip level (all but the
            first, coarsest block do).
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    block = DPTFusionBlock(channels=16, has_residual=True)
    y = block(keras.ops.ones((2, 6, 4, 16)), keras.ops.ones((2, 5, 3, 16)))
    y.shape  # (2, 12, 8, 16)
    ```
    """

    def __init__(self, channels, has_residual=True, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.has_residual = bool(has_residual)
        policy = self.dtype_policy
        self.residual_unit = None
        if self.has_residual:
            self.residual_unit = PreActResidualConvUnit(
                self.channels, dtype=policy, name="residual_unit"
            )
        self.main_unit = PreActResidualConvUnit(
            self.channels, dtype=policy, name="main_unit"
        )
        self.out_conv = _conv(self.channels, 1, "out_conv", policy)

    def build(self, input_shape=None, residual_shape=None):
        shape = (None, None, None, self.channels)
        if self.residual_unit is not None:
            self.residual_unit.build(shape)
        self.main_unit.build(shape)
        self.out_conv.build(shape)
        self.built = True

    def call(self, x, residual=None):
        if residual is not None:
            if not self.has_residual:
                raise ValueError(
                    f"The fusion block {self.name!r} takes no skip level."
                )
            static_x, static_residual = x.shape[1:3], residual.shape[1:3]
            if static_x != static_residual or None in static_x:
                # An identity when the sizes turn out equal at run time.
                residual = resize_bilinear(
                    residual, spatial_size(x), align_corners=False
                )
            x = x + self.residual_unit(residual)
        x = self.main_unit(x)
        height, width = spatial_size(x)
        x = resize_bilinear(x, (height * 2, width * 2), align_corners=True)
        return self.out_conv(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"channels": self.channels, "has_residual": self.has_residual}
        )
        return config


@keras.saving.register_keras_serializable(package="keras_tips")
class DPTReassembleBlocks(keras.layers.Layer):
    """Turns four levels of ViT features into maps at four scales.

    For level `i`, given the CLS token `(B, D)` and the patch map
    `(B, h, w, D)`:

    1. readout (`"project"`): every patch token is concatenated with the
       CLS token and projected back to `D` by a dense layer followed by the
       tanh approximation of GELU (`"ignore"` keeps the patch tokens as they
       are);
    2. a 1x1 convolution with bias to `post_process_channels[i]`;
    3. resizing: level 0 by a 4x4 stride-4 transposed convolution (4x),
       level 1 by a 2x2 stride-2 transposed convolution (2x), level 2 kept,
       level 3 by a 3x3 stride-2 convolution with zero padding 1
       (`ceil(h / 2) x ceil(w / 2)`).

    Args:
        input_embed_dim: int. Width `D` of the ViT features.
        post_process_channels: four ints, the width of each level.
        readout_type: `"project"` or `"ignore"`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Example:
    ```python
    reassemble = DPTReassembleBlocks(64, (8, 16, 32, 64))
    cls, patches = keras.ops.ones((2, 64)), keras.ops.ones((2, 5, 3, 64))
    maps = reassemble([(cls, patches)] * 4)
    [m.shape for m in maps]
    # [(2, 20, 12, 8), (2, 10, 6, 16), (2, 5, 3, 32), (2, 3, 2, 64)]
    ```
    """

    def __init__(
        self,
        input_embed_dim,
        post_process_channels,
        readout_type="project",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if readout_type not in READOUT_TYPES:
            raise ValueError(
                f"`readout_type` must be one of {READOUT_TYPES}; received "
                f"{readout_type!r}."
            )
        post_process_channels = tuple(int(c) for c in post_process_channels)
        if len(post_process_channels) != 4:
            raise ValueError(
                "`post_process_channels` must give the width of each of the "
                f"four levels; received {post_process_channels}."
            )
        self.input_embed_dim = int(input_embed_dim)
        self.post_process_channels = post_process_channels
        self.readout_type = readout_type
        policy = self.dtype_policy
        self.readout_projects = []
        if readout_type == "project":
            self.readout_projects = [
                keras.layers.Dense(
                    self.input_embed_dim,
                    dtype=policy,
                    name=f"readout_projects_{i}",
                )
                for i in range(4)
            ]
        self.out_projections = [
            _conv(channels, 1, f"out_projections_{i}", policy)
            for i, channels in enumerate(post_process_channels)
        ]
        first, second, _, last = post_process_channels
        self.resize_layers = [
            keras.layers.Conv2DTranspose(
                first, 4, strides=4, padding="valid", dtype=policy,
                name="resize_layers_0",
            ),
            keras.layers.Conv2DTranspose(
                second, 2, strides=2, padding="valid", dtype=policy,
                name="resize_layers_1",
            ),
            None,
            _conv(last, 3, "resize_layers_3", policy, strides=2, padding="valid"),
        ]

    def build(self, input_shape=None):
        dim = self.input_embed_dim
        for dense in self.readout_projects:
            dense.build((None, None, None, 2 * dim))
        for conv, resize, channels in zip(
            self.out_projections, self.resize_layers, self.post_process_channels
        ):
            conv.build((None, None, None, dim))
            if resize is not None:
                resize.build((None, None, None, channels))
        self.built = True

    def call(self, features):
        outputs = []
        for level, (cls_token, patches) in enumerate(features):
            x = patches
            if self.readout_type == "project":
                readout = ops.zeros_like(patches) + cls_token[:, None, None, :]
                x = self.readout_projects[level](
                    ops.concatenate([patches, readout], axis=-1)
                )
                x = keras.activations.gelu(x, approximate=True)
            x = self.out_projections[level](x)
            resize = self.resize_layers[level]
            if level == 3:
                # PyTorch's padding=1 on every side; Keras' "same" would pad
                # only the bottom and right of an even-sized map.
                x = ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            if resize is not None:
                x = resize(x)
            outputs.append(x)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "input_embed_dim": self.input_embed_dim,
                "post_process_channels": list(self.post_process_channels),
                "readout_type": self.readout_type,
            }
        )
        return config
