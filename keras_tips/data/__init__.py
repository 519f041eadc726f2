"""Data: image-text sources, the grain pretraining pipeline, shapes dataset.

Public API:
    PretrainingPipeline, PipelineConfig, AugmentationConfig, CropAugmentation,
    PatchMaskConfig,
    DataStats, JsonlImageTextSource, ArrayRecordImageTextSource,
    InMemoryImageTextSource, SkimagePhotosSource, ShapesDataset,
    write_array_record, write_webdataset_array_record, write_shapes_jsonl,
    MultiCropTransform,
    EvalTransform, PretrainingExampleTransform.

The pipeline is split one concept a file: `pipeline_config` (settings),
`example_transform` (record -> example), `batching` (problem counts and
batches), `pipeline` (the grain graph and the iterator of batches).
"""

from keras_tips.data.example_transform import PretrainingExampleTransform
from keras_tips.data.masking import PatchMaskConfig
from keras_tips.data.masking import PatchMasker
from keras_tips.data.masking import block_patch_mask
from keras_tips.data.masking import random_patch_mask
from keras_tips.data.photos import SkimagePhotosSource
from keras_tips.data.pipeline import BATCH_KEYS
from keras_tips.data.pipeline import PretrainingPipeline
from keras_tips.data.pipeline import build_batch_dataset
from keras_tips.data.pipeline import build_example_dataset
from keras_tips.data.pipeline_config import PipelineConfig
from keras_tips.data.records import deserialize_record
from keras_tips.data.records import serialize_record
from keras_tips.data.shapes import SHAPE_CLASSES
from keras_tips.data.shapes import ZERO_SHOT_TEMPLATES
from keras_tips.data.shapes import ShapesDataset
from keras_tips.data.shapes import write_shapes_jsonl
from keras_tips.data.shapes import zero_shot_prompts
from keras_tips.data.shards import write_array_record
from keras_tips.data.sources import ArrayRecordImageTextSource
from keras_tips.data.sources import InMemoryImageTextSource
from keras_tips.data.sources import JsonlImageTextSource
from keras_tips.data.stats import DataStats
from keras_tips.data.transforms import AugmentationConfig
from keras_tips.data.transforms import CropAugmentation
from keras_tips.data.transforms import EvalTransform
from keras_tips.data.transforms import MultiCropTransform
from keras_tips.data.webdataset import write_webdataset_array_record
