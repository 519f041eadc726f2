"""Image converter of TIPS: the official preprocessing.

The official notebooks (and Hugging Face's `Tipsv2ImageProcessor`) squash
every image to the model's resolution, bilinearly with antialiasing (PIL's
`BILINEAR` resize, `torch`'s `interpolate(..., antialias=True)`,
`tf.image.resize(..., antialias=True)`), and scale it to [0, 1]: no crop, no
mean/std. `TIPSImageConverter` is the one implementation of it in this
package: `keras_tips.data.image_files.load_image` (and with it every command
that reads image files) runs images through it too.
"""

import keras
import numpy as np
from keras_hub.layers import ImageConverter

from keras_tips.models.tips_backbone import TIPSBackbone

# The official resize. `keras.layers.Resizing` computes it on every backend
# and inside `tf.data` graphs.
INTERPOLATION = "bilinear"
ANTIALIAS = True


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSImageConverter(ImageConverter):
    """Squash-resizes images to the model's resolution and scales them to
    [0, 1], as the official preprocessing does.

    Images of any size and aspect ratio are resized to `image_size` without
    cropping or padding (a non-square photo is squashed, as officially),
    bilinearly with antialiasing, then multiplied by `scale`. The resize runs
    in float32 on the scaled values: resizing uint8 pixels would round every
    output pixel to an integer. There is no mean/std normalisation.

    Takes (B, H, W, 3) or (H, W, 3) uint8 or float images, channels last, or
    a list of images of different sizes (one output each).

    Args:
        image_size: (height, width), multiples of 14 (448 for the high-res
            presets, 224 for g/14 low-res).
        scale: float or None. Multiplier applied before resizing: 1/255 (the
            default) for uint8 images in [0, 255], None for floats already
            in [0, 1].
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    ```python
    converter = TIPSImageConverter(image_size=(448, 448))
    images = converter(np.random.randint(0, 256, (2, 500, 375, 3), "uint8"))
    images.shape  # (2, 448, 448, 3), float32 in [0, 1]
    ```
    """

    backbone_cls = TIPSBackbone

    def __init__(self, image_size=(448, 448), scale=1.0 / 255.0, **kwargs):
        if image_size is not None:
            image_size = tuple(int(side) for side in image_size)
            if len(image_size) != 2 or any(
                side < 14 or side % 14 for side in image_size
            ):
                raise ValueError(
                    f"`image_size` {image_size} must be (height, width), "
                    "positive multiples of 14, the TIPS patch size."
                )
        for name, official in (
            ("crop_to_aspect_ratio", False),
            ("pad_to_aspect_ratio", False),
            ("interpolation", INTERPOLATION),
            ("antialias", ANTIALIAS),
        ):
            if name in kwargs and kwargs.pop(name) != official:
                raise ValueError(
                    f"TIPSImageConverter always resizes as the official "
                    f"preprocessing does ({name}={official!r}); resize or "
                    "crop the images yourself first to preprocess them "
                    "differently."
                )
        if kwargs.pop("offset", None) is not None:
            raise ValueError(
                "TIPSImageConverter takes no `offset`: TIPS images are values "
                "in [0, 1], without mean/std normalisation."
            )
        if kwargs.pop("data_format", None) not in (None, "channels_last"):
            raise ValueError("TIPS images are channels-last.")
        # Bounding boxes (dict inputs) are refused in `_call_python`.
        kwargs.pop("bounding_box_format", None)
        # The parent class rescales after resizing; here the scale is
        # applied first (a linear map commutes with the resize), by a Keras
        # layer that also casts to float32, on every backend and in tf.data.
        super().__init__(
            image_size=image_size,
            scale=None,
            offset=None,
            crop_to_aspect_ratio=False,
            pad_to_aspect_ratio=False,
            interpolation=INTERPOLATION,
            antialias=ANTIALIAS,
            data_format="channels_last",
            **kwargs,
        )
        self.input_scale = None if scale is None else float(scale)
        self.rescaling = keras.layers.Rescaling(
            1.0 if scale is None else float(scale),
            dtype=self.dtype_policy,
            name="rescaling",
        )

    def _rescale(self, inputs):
        if isinstance(inputs, (list, tuple)):
            try:
                inputs = np.asarray(inputs)
            except ValueError:  # Images of different sizes.
                return type(inputs)(self._rescale(x) for x in inputs)
        if isinstance(inputs, np.ndarray) and inputs.dtype == object:
            return [self._rescale(x) for x in inputs]
        return self.rescaling(inputs)

    def _call_python(self, inputs):
        if isinstance(inputs, dict):
            raise ValueError(
                "TIPSImageConverter takes images (an array or a list of "
                f"arrays), not a dict; received keys {sorted(inputs)}."
            )
        return super()._call_python(self._rescale(inputs))

    def get_config(self):
        config = super().get_config()
        for name in (
            "offset",
            "crop_to_aspect_ratio",
            "pad_to_aspect_ratio",
            "interpolation",
            "antialias",
            "bounding_box_format",
        ):
            config.pop(name, None)
        config["scale"] = self.input_scale
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Presets written by earlier versions record keras-hub's default
        # `crop_to_aspect_ratio=True`, which is not the official
        # preprocessing (nor what they were converted to reproduce): the
        # official squash resize replaces it.
        for name in (
            "crop_to_aspect_ratio",
            "pad_to_aspect_ratio",
            "interpolation",
            "antialias",
            "offset",
            "bounding_box_format",
        ):
            config.pop(name, None)
        return cls(**config)
