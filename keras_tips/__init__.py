"""keras_tips: TIPS (Text-Image Pretraining with Spatial awareness) for Keras 3.

Public API:
    TIPSModel, TIPSBackbone, TIPSVisionEncoder, TIPSTextEncoder,
    TIPSTokenizer, TIPSImageConverter, TIPSPreprocessor, TIPS_PRESETS,
    convert_official_checkpoint.
"""

from keras_tips.conversion.convert import convert_official_checkpoint
from keras_tips.models import TIPS_PRESETS
from keras_tips.models import TIPSBackbone
from keras_tips.models import TIPSImageConverter
from keras_tips.models import TIPSModel
from keras_tips.models import TIPSPreprocessor
from keras_tips.models import TIPSTextEncoder
from keras_tips.models import TIPSTokenizer
from keras_tips.models import TIPSVisionEncoder

__version__ = "0.1.0"
