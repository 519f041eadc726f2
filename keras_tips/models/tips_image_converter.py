"""Image converter of TIPS: resize, scale to [0, 1], no mean/std."""

import keras
from keras_hub.layers import ImageConverter

from keras_tips.models.tips_backbone import TIPSBackbone


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSImageConverter(ImageConverter):
    """Resizes images to the preset resolution and scales them to [0, 1].

    TIPS takes images in [0, 1] without mean/std normalisation. The defaults
    suit uint8 inputs in [0, 255] (`scale=1/255`); pass `scale=None` for
    images already in [0, 1]. Resizing is bilinear with antialiasing.

    Args:
        image_size: (height, width), multiples of 14 (448 for the high-res
            presets, 224 for g/14 low-res).
        scale: float or None. Multiplier applied after resizing.
        **kwargs: standard `keras_hub.layers.ImageConverter` arguments.

    Example:
    ```python
    converter = TIPSImageConverter(image_size=(448, 448))
    images = converter(np.random.randint(0, 256, (2, 500, 375, 3)))
    ```
    """

    backbone_cls = TIPSBackbone

    def __init__(
        self,
        image_size=(448, 448),
        scale=1.0 / 255.0,
        interpolation="bilinear",
        antialias=True,
        **kwargs,
    ):
        if image_size is not None:
            image_size = tuple(int(side) for side in image_size)
            if any(side % 14 for side in image_size):
                raise ValueError(
                    f"`image_size` {image_size} must be multiples of 14, the "
                    "TIPS patch size."
                )
        super().__init__(
            image_size=image_size,
            scale=scale,
            interpolation=interpolation,
            antialias=antialias,
            **kwargs,
        )
