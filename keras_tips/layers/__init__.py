"""Building blocks shared by the TIPS towers."""

from keras_tips.layers.attention import FusedQKVAttention
from keras_tips.layers.drop_path import DropPath
from keras_tips.layers.dpt import DPTFusionBlock
from keras_tips.layers.dpt import DPTReassembleBlocks
from keras_tips.layers.dpt import PreActResidualConvUnit
from keras_tips.layers.interpolation import resize_bicubic
from keras_tips.layers.interpolation import resize_bilinear
from keras_tips.layers.layer_scale import LayerScale
from keras_tips.layers.mlp import MLP
from keras_tips.layers.mlp import FusedSwiGLU
from keras_tips.layers.positions import resize_position_grid
from keras_tips.layers.positions import sinusoidal_positions
from keras_tips.layers.transformer_blocks import TextTransformerBlock
from keras_tips.layers.transformer_blocks import VisionTransformerBlock
from keras_tips.layers.contrastive_head import ContrastiveHead
from keras_tips.layers.contrastive_head import l2_normalize
