import numpy as np
import pytest

from keras_tips.visualize.pca import pca_image
from keras_tips.visualize.pca import principal_components


def structured_features(seed=0, h=4, w=6, dim=16):
    """Left half of the grid along +v, right half along -v, plus noise."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=dim)
    side = np.where(np.arange(w) < w // 2, 1.0, -1.0)
    features = side[None, :, None] * direction * 5 + rng.normal(size=(h, w, dim))
    return features.astype("float32"), np.broadcast_to(side > 0, (h, w))


def test_principal_components_of_a_known_direction():
    rng = np.random.default_rng(0)
    direction = np.array([3.0, 4.0, 0.0]) / 5
    data = rng.normal(size=(200, 1)) * 10 * direction + 0.1 * rng.normal(size=(200, 3))
    mean, components = principal_components(data, 2)
    # Sign fixed: the largest loading (0.8) is positive.
    np.testing.assert_allclose(components[0], direction, atol=0.02)
    assert components.shape == (2, 3)
    np.testing.assert_allclose(mean, data.mean(0))


def test_pca_image_shape_dtype_and_structure():
    features, left = structured_features()
    image = pca_image(features)
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    # The first component (red) separates the halves.
    red = image[..., 0].astype(float)
    assert abs(red[left].mean() - red[~left].mean()) > 150
    big = pca_image(features, image_size=(56, 84))
    assert big.shape == (56, 84, 3)
    np.testing.assert_array_equal(big[::14, ::14], image)  # nearest upsampling
    assert pca_image(features, (56, 84), resample="bilinear").shape == (56, 84, 3)


def test_pca_image_depends_on_the_features_and_is_deterministic():
    first, _ = structured_features(seed=0)
    second, _ = structured_features(seed=1)
    np.testing.assert_array_equal(pca_image(first), pca_image(first.copy()))
    assert not np.array_equal(pca_image(first), pca_image(second))


def test_batch_shares_one_pca():
    features, _ = structured_features()
    batch = np.stack([features, features[:, ::-1]])
    images = pca_image(batch, image_size=(8, 12))
    assert images.shape == (2, 8, 12, 3)
    # The same patches get the same colours in both images.
    np.testing.assert_array_equal(images[0], images[1][:, ::-1])


def test_foreground_masking():
    features, left = structured_features()
    image, foreground = pca_image(features, foreground_threshold=0.5, return_foreground=True)
    # One half is foreground (which one depends on the component's sign).
    assert np.array_equal(foreground, left) or np.array_equal(foreground, ~left)
    assert (image[~foreground] == 0).all()
    assert (image[foreground].max(axis=-1) > 0).any()
    _, inverted = pca_image(
        features, foreground_threshold=0.5, invert_foreground=True, return_foreground=True
    )
    np.testing.assert_array_equal(inverted, ~foreground)
    # Without a threshold, everything is foreground.
    _, everything = pca_image(features, return_foreground=True)
    assert everything.all()


def test_degenerate_inputs():
    constant = np.ones((3, 3, 8))
    image = pca_image(constant)
    assert (image == 128).all()  # no variance: mid grey
    assert pca_image(np.random.default_rng(0).normal(size=(2, 2, 2))).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="patches_to_grid"):
        pca_image(np.zeros((16, 8)))
