"""keras_tips: TIPS (Text-Image Pretraining with Spatial awareness) for Keras 3.

Public API (imported on first use, so that light modules such as the data
pipeline's worker processes do not pay for Keras, keras-hub and TensorFlow):
    TIPSModel, TIPSBackbone, TIPSVisionEncoder, TIPSTextEncoder,
    TIPSTokenizer, TIPSImageConverter, TIPSPreprocessor, TIPS_PRESETS,
    TIPSPretrainer, convert_official_checkpoint.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "TIPSModel": "keras_tips.models.tips_model",
    "TIPSBackbone": "keras_tips.models.tips_backbone",
    "TIPSVisionEncoder": "keras_tips.models.tips_vision_encoder",
    "TIPSTextEncoder": "keras_tips.models.tips_text_encoder",
    "TIPSTokenizer": "keras_tips.models.tips_tokenizer",
    "TIPSImageConverter": "keras_tips.models.tips_image_converter",
    "TIPSPreprocessor": "keras_tips.models.tips_preprocessor",
    "TIPS_PRESETS": "keras_tips.models.tips_presets",
    "TIPSPretrainer": "keras_tips.training.pretrainer",
    "convert_official_checkpoint": "keras_tips.conversion.convert",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_tips' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
