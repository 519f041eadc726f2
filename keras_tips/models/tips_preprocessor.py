"""Preprocessor of TIPS: images through the image converter, texts through
the tokenizer."""

import keras
from keras_hub.models import Preprocessor

from keras_tips.models.tips_backbone import TIPSBackbone
from keras_tips.models.tips_image_converter import TIPSImageConverter
from keras_tips.models.tips_tokenizer import TIPSTokenizer


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSPreprocessor(Preprocessor):
    """Turns raw images and strings into `TIPSBackbone` inputs.

    Takes a dict with `"images"` and/or `"texts"` and returns `"images"`
    (resized, in [0, 1]) and/or `"token_ids"` and `"padding_mask"` (True for
    real tokens).

    Args:
        tokenizer: a `TIPSTokenizer`.
        image_converter: a `TIPSImageConverter` or None.
        **kwargs: standard `keras_hub.models.Preprocessor` arguments.

    Example:
    ```python
    preprocessor = TIPSPreprocessor.from_preset("./tips_preset")
    inputs = preprocessor({"images": uint8_images, "texts": ["a dog"]})
    ```
    """

    backbone_cls = TIPSBackbone
    tokenizer_cls = TIPSTokenizer
    image_converter_cls = TIPSImageConverter

    def __init__(self, tokenizer, image_converter=None, **kwargs):
        super().__init__(**kwargs)
        self.tokenizer = tokenizer
        self.image_converter = image_converter

    def build(self, input_shape=None):
        # Nothing to build: the tokenizer and converter hold no weights.
        self.built = True

    def call(self, x, y=None, sample_weight=None):
        if not isinstance(x, dict) or not ({"images", "texts"} & set(x)):
            raise ValueError(
                "TIPSPreprocessor expects a dict with 'images' and/or 'texts'. "
                f"Received: {type(x).__name__}"
            )
        outputs = {}
        if "images" in x:
            images = x["images"]
            if self.image_converter is not None:
                images = self.image_converter(images)
            outputs["images"] = images
        if "texts" in x:
            token_ids = self.tokenizer(x["texts"])
            outputs["token_ids"] = token_ids
            outputs["padding_mask"] = token_ids != 0
        return keras.utils.pack_x_y_sample_weight(outputs, y, sample_weight)

    @property
    def sequence_length(self):
        return self.tokenizer.sequence_length
