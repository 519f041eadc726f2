"""keras_tips: TIPS (Text-Image Pretraining with Spatial awareness) for Keras 3.

Public API:
    TIPSModel, TIPSBackbone, TIPSVisionEncoder, TIPSTextEncoder,
    TIPSTokenizer, TIPSImageConverter, TIPSPreprocessor, TIPS_PRESETS,
    TIPSPretrainer, convert_official_checkpoint, CheckpointError; the DPT
    dense heads TIPSDPTHead, TIPS_DPT_PRESETS, convert_dpt_checkpoint,
    normalize_normals.

Everything is imported eagerly: importing the package registers every Keras
class with Keras' serialisation, so `keras.models.load_model` finds them.
(Grain worker processes therefore also import Keras and keras-hub when they
start; that is a one-off cost of a few seconds per worker.)
"""

from keras_tips.conversion.convert import convert_dpt_checkpoint
from keras_tips.conversion.convert import convert_official_checkpoint
from keras_tips.errors import CheckpointError
from keras_tips.models import TIPS_DPT_PRESETS
from keras_tips.models import TIPS_PRESETS
from keras_tips.models import TIPSBackbone
from keras_tips.models import TIPSImageConverter
from keras_tips.models import TIPSPreprocessor
from keras_tips.models import TIPSTextEncoder
from keras_tips.models import TIPSTokenizer
from keras_tips.models import TIPSVisionEncoder
from keras_tips.models.tips_dpt_head import TIPSDPTHead
from keras_tips.models.tips_dpt_head import normalize_normals
from keras_tips.models.tips_model import TIPSModel
from keras_tips.training.pretrainer import TIPSPretrainer
from keras_tips.version import __version__
