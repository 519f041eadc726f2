import numpy as np
import pytest

from keras_tips.visualize.curves import plot_curves
from keras_tips.visualize.images import load_png


def test_curves_png_written_and_readable(tmp_path):
    history = {"loss": [2.3, 1.1, 0.7], "val_loss": [2.4, 1.3, 0.9], "accuracy": [0.1, 0.5, 0.7]}
    path = tmp_path / "curves.png"
    image = plot_curves(history, path, panel_size=(300, 200))
    # Two panels (val_loss joins loss) side by side.
    assert image.shape == (200, 600, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(load_png(path), image)
    separate = plot_curves(history, panel_size=(300, 200), pair_validation=False)
    assert separate.shape == (200, 900, 3)
    assert plot_curves(history, panel_size=(300, 200), columns=1).shape == (400, 300, 3)


def test_curves_depend_on_values():
    first = plot_curves({"loss": [3.0, 2.0, 1.0]})
    second = plot_curves({"loss": [1.0, 2.0, 3.0]})
    assert first.shape == second.shape
    assert not np.array_equal(first, second)
    # Something other than white and black (the line colour) is drawn.
    colored = (first.max(axis=-1) - first.min(axis=-1)) > 50
    assert colored.sum() > 50


def test_curves_edge_cases():
    class History:  # like keras.callbacks.History
        history = {"loss": [1.0]}

    assert plot_curves(History()).dtype == np.uint8
    nested = plot_curves({"loss": {"train": [1.0, np.nan, 0.5], "val": [np.inf, 0.9, 0.8]}})
    assert nested.shape == (240, 360, 3)
    plot_curves({"lr": [1e-3] * 4, "empty": [], "nan": [np.nan]}, log_scale=True)
    with pytest.raises(ValueError, match="non-empty"):
        plot_curves({})
    with pytest.raises(ValueError, match="too small"):
        plot_curves({"loss": [1.0]}, panel_size=(20, 20))
