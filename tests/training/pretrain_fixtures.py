"""Tiny models and batches for the training tests."""

import keras
import numpy as np

from keras_tips import TIPSBackbone
from keras_tips import TIPSTextEncoder
from keras_tips import TIPSVisionEncoder
from keras_tips.training.pretrainer import TIPSPretrainer

VOCABULARY = 50
LENGTH = 8


def tiny_backbone(seed=0, dtype=None):
    keras.utils.set_random_seed(seed)
    return TIPSBackbone(
        TIPSVisionEncoder(32, 2, 2, 64, position_grid_size=4, layer_scale_init_value=0.1),
        TIPSTextEncoder(VOCABULARY, 32, 1, 2, 64, max_sequence_length=LENGTH),
        temperature=0.1,
        dtype=dtype,
    )


def tiny_pretrainer(seed=0, total_steps=20, **kwargs):
    options = dict(
        total_steps=total_steps,
        num_prototypes=64,
        head_hidden_dim=32,
        head_bottleneck_dim=16,
        head_num_layers=2,
        teacher_momentum=(0.9, 1.0),
    )
    options.update(kwargs)
    dtype = options.pop("dtype", None)
    return TIPSPretrainer(tiny_backbone(seed, dtype), **options)


def random_batch(batch_size=4, seed=0, local=2, mask_ratio=0.5):
    rng = np.random.default_rng(seed)
    batch = {
        "global_images": rng.random((batch_size, 56, 56, 3), dtype="float32"),
        "patch_mask": rng.random((batch_size, 16)) < mask_ratio,
        "web_token_ids": rng.integers(2, VOCABULARY, (batch_size, LENGTH)).astype("int32"),
        "web_padding_mask": np.ones((batch_size, LENGTH), bool),
        "synthetic_token_ids": rng.integers(2, VOCABULARY, (batch_size, LENGTH)).astype("int32"),
        "synthetic_padding_mask": np.ones((batch_size, LENGTH), bool),
        "has_web": np.ones((batch_size,), bool),
        "has_synthetic": np.ones((batch_size,), bool),
    }
    # Realistic padding: later tokens of some captions are padding.
    batch["web_padding_mask"][0, 5:] = False
    batch["web_token_ids"][0, 5:] = 0
    if local:
        batch["local_images"] = rng.random((batch_size, local, 28, 28, 3), dtype="float32")
    return batch


def numpy_weights(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]
