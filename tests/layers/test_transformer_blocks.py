"""The transformer blocks serialise by their registered names and
round-trip through `get_config`."""

import keras
import numpy as np
import pytest

from keras_tips.layers import TextTransformerBlock
from keras_tips.layers import VisionTransformerBlock

pytestmark = pytest.mark.multibackend


@pytest.mark.parametrize(
    "block",
    [
        VisionTransformerBlock(
            num_heads=2,
            intermediate_dim=48,
            ffn_type="swiglu",
            layer_scale_init_value=0.3,
            layer_norm_epsilon=1e-5,
            drop_path_rate=0.1,
            name="blocks_3",
        ),
        TextTransformerBlock(
            num_heads=2, intermediate_dim=48, layer_norm_epsilon=1e-6, name="resblocks_1"
        ),
    ],
    ids=lambda block: type(block).__name__,
)
def test_block_round_trips_through_keras_serialization(block):
    serialized = keras.saving.serialize_keras_object(block)
    assert serialized["registered_name"] == f"keras_tips>{type(block).__name__}"
    clone = keras.saving.deserialize_keras_object(serialized)
    assert type(clone) is type(block)
    assert clone.get_config() == block.get_config()
    assert type(block).from_config(block.get_config()).get_config() == block.get_config()


def test_deserialized_vision_block_computes_the_same():
    block = VisionTransformerBlock(num_heads=2, intermediate_dim=48, layer_scale_init_value=0.5)
    block.build((None, None, 32))
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(block))
    clone.set_weights(block.get_weights())
    tokens = np.random.default_rng(0).random((2, 5, 32), dtype="float32")
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(clone(tokens)), keras.ops.convert_to_numpy(block(tokens))
    )
