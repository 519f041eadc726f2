"""The TIPS model family: its parts and the registry of released checkpoints.

`TIPSModel` (`tips_model.py`) and `TIPSDPTHead` (`tips_dpt_head.py`) are
exported by `keras_tips`, not here: their `from_preset` converts registered
checkpoints through `keras_tips.conversion`, which builds models from the
parts below, and every import of a module of this package runs this file
first. Importing them here would make the two packages import each other.
"""

from keras_tips.models.tips_backbone import TIPSBackbone
from keras_tips.models.tips_dpt_presets import TIPS_DPT_PRESETS
from keras_tips.models.tips_image_converter import TIPSImageConverter
from keras_tips.models.tips_preprocessor import TIPSPreprocessor
from keras_tips.models.tips_presets import TIPS_PRESETS
from keras_tips.models.tips_text_encoder import TIPSTextEncoder
from keras_tips.models.tips_tokenizer import TIPSTokenizer
from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder
