"""The TIPS model family."""

from keras_tips.models.tips_backbone import TIPSBackbone
from keras_tips.models.tips_dpt_head import TIPSDPTHead
from keras_tips.models.tips_dpt_head import normalize_normals
from keras_tips.models.tips_dpt_presets import TIPS_DPT_PRESETS
from keras_tips.models.tips_image_converter import TIPSImageConverter
from keras_tips.models.tips_model import TIPSModel
from keras_tips.models.tips_preprocessor import TIPSPreprocessor
from keras_tips.models.tips_presets import TIPS_PRESETS
from keras_tips.models.tips_text_encoder import TIPSTextEncoder
from keras_tips.models.tips_tokenizer import TIPSTokenizer
from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder
