"""The image tower's settings for training from scratch: pixel statistics
inside the tower and a sinusoidal start for the learned position table."""

import keras
import numpy as np
import pytest

from keras_tips import TIPSVisionEncoder
from keras_tips.layers.positions import SinusoidalPositionTableInitializer
from keras_tips.layers.positions import sinusoidal_position_grid
from keras_tips.layers.positions import sinusoidal_positions

pytestmark = pytest.mark.multibackend

TINY = dict(hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
            position_grid_size=2)


def test_pixel_statistics_equal_normalising_the_input_by_hand():
    images = np.random.default_rng(0).random((2, 28, 28, 3)).astype("float32")
    keras.utils.set_random_seed(1)
    normalising = TIPSVisionEncoder(**TINY, pixel_mean=(0.5, 0.4, 0.3), pixel_std=0.25)
    normalising(images)
    plain = TIPSVisionEncoder(**TINY)
    plain(images)
    plain.set_weights(normalising.get_weights())
    mean = np.array([0.5, 0.4, 0.3], "float32")
    expected = plain((images - mean) / 0.25)
    got = normalising(images)
    for key in ("cls_1", "cls_2", "patches"):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(got[key]),
            keras.ops.convert_to_numpy(expected[key]), atol=1e-5,
        )
    # And they change the output: the statistics are not ignored.
    unnormalised = keras.ops.convert_to_numpy(plain(images)["patches"])
    assert np.abs(unnormalised - keras.ops.convert_to_numpy(got["patches"])).max() > 1e-2


def test_settings_round_trip_through_the_config():
    encoder = TIPSVisionEncoder(
        **TINY, pixel_mean=[0.5, 0.5, 0.5], pixel_std=0.25,
        position_initializer="sinusoidal",
    )
    config = encoder.get_config()
    assert config["pixel_mean"] == (0.5, 0.5, 0.5)
    assert config["position_initializer"] == "sinusoidal"
    assert TIPSVisionEncoder.from_config(config).get_config() == config


def test_the_defaults_are_the_official_tower():
    config = TIPSVisionEncoder(**TINY).get_config()
    assert (config["pixel_mean"], config["pixel_std"]) == (0.0, 1.0)
    assert config["position_initializer"] == "truncated_normal"


def test_the_sinusoidal_table_encodes_rows_and_columns():
    encoder = TIPSVisionEncoder(**TINY, position_initializer="sinusoidal")
    encoder.build()
    table = keras.ops.convert_to_numpy(encoder.position_embedding)
    assert table.shape == (1, 5, 16)
    np.testing.assert_array_equal(table[0, 0], 0.0)  # the CLS entry
    rows = keras.ops.convert_to_numpy(sinusoidal_positions(2, 8))
    # Patch (1, 0) holds row 1 in its first half and column 0 in its second.
    np.testing.assert_allclose(table[0, 1 + 2], np.concatenate([rows[1], rows[0]]), atol=1e-6)
    # Every patch of the grid gets its own entry, of order 1.
    grid = keras.ops.convert_to_numpy(sinusoidal_position_grid(2, 16))
    assert len({tuple(np.round(row, 5)) for row in grid}) == 4
    assert 0.3 < np.abs(grid).mean() < 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pixel_std=0.0), "pixel_std"),
        (dict(pixel_mean=(0.5, 0.5)), "pixel_mean"),
        (dict(position_initializer="zeros"), "position_initializer"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TIPSVisionEncoder(**TINY, **kwargs)


def test_the_initializer_refuses_a_table_without_a_square_grid():
    with pytest.raises(ValueError, match="square grid"):
        SinusoidalPositionTableInitializer()((1, 6, 8))
