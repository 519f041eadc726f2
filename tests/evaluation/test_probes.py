import numpy as np
import pytest

from keras_tips.evaluation.probes import LinearProbe
from keras_tips.evaluation.probes import evaluate_depth_probe
from keras_tips.evaluation.probes import evaluate_segmentation_probe
from keras_tips.evaluation.probes import fit_depth_probe
from keras_tips.evaluation.probes import fit_segmentation_probe
from keras_tips.evaluation.utils import bilinear_resize

NUM_CLASSES = 3


def separable_segmentation(seed=0, images=16, grid=4, size=8, dim=8):
    """Patch features = class prototype + noise; targets follow the patches.

    The targets are the argmax of the bilinearly upsampled one-hot patch
    classes, so a linear head with upsampled logits can fit them exactly.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(size=(NUM_CLASSES, dim)) * 3.0
    labels = rng.integers(0, NUM_CLASSES, size=(images, grid, grid))
    features = prototypes[labels] + 0.1 * rng.normal(size=(images, grid, grid, dim))
    targets = np.argmax(bilinear_resize(np.eye(NUM_CLASSES)[labels], (size, size)), -1)
    return features.astype("float32"), targets


def linear_depth(seed=0, images=8, grid=4, size=12, dim=6):
    """Depth that is exactly an upsampled linear map of the features."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(images, grid, grid, dim)).astype("float32")
    weights = rng.normal(size=dim)
    depth = bilinear_resize(features @ weights[:, None] + 10.0, (size, size))[..., 0]
    return features, depth, weights


def test_ridge_depth_recovers_the_linear_map():
    features, depth, weights = linear_depth()
    probe = fit_depth_probe(features[:6], depth[:6], l2=0.0)
    np.testing.assert_allclose(probe.kernel[:, 0], weights, atol=1e-4)
    np.testing.assert_allclose(probe.bias, [10.0], atol=1e-4)
    metrics = evaluate_depth_probe(features[:6], depth[:6], features[6:], depth[6:], l2=0.0)
    assert metrics["rmse"] < 1e-4
    assert metrics["delta1"] == 1.0
    # Sampling a subset of pixels still recovers it (the problem is exact).
    sampled = fit_depth_probe(features[:6], depth[:6], l2=0.0, max_pixels_per_image=40)
    np.testing.assert_allclose(sampled.kernel[:, 0], weights, atol=1e-3)


def test_depth_valid_mask_excludes_corrupted_pixels():
    features, depth, weights = linear_depth(seed=1)
    corrupted = depth.copy()
    corrupted[:, :3] = 1000.0
    mask = np.ones(depth.shape, bool)
    mask[:, :3] = False
    probe = fit_depth_probe(features, corrupted, valid_mask=mask, l2=0.0)
    np.testing.assert_allclose(probe.kernel[:, 0], weights, atol=1e-4)
    unmasked = fit_depth_probe(features, corrupted, l2=0.0)
    assert np.abs(unmasked.kernel[:, 0] - weights).max() > 0.1


def test_ridge_segmentation_probe_on_separable_toy():
    features, targets = separable_segmentation()
    metrics = evaluate_segmentation_probe(
        features[:12], targets[:12], features[12:], targets[12:], NUM_CLASSES, method="ridge"
    )
    assert metrics["miou"] > 0.99
    assert metrics["pixel_accuracy"] > 0.99


def test_probe_takes_raw_features_after_standardisation():
    features, targets = separable_segmentation()
    probe = fit_segmentation_probe(features, targets, NUM_CLASSES, method="ridge")
    logits = probe.patch_logits(features)
    np.testing.assert_allclose(logits, features @ probe.kernel + probe.bias, rtol=1e-5)
    assert probe.predict(features, (8, 8)).shape == (16, 8, 8)
    assert probe.predict_logits(features[:2], (10, 6)).shape == (2, 10, 6, NUM_CLASSES)
    with pytest.raises(ValueError, match="feature channels"):
        probe.predict(features[..., :4], (8, 8))


def test_input_errors():
    features, targets = separable_segmentation()
    with pytest.raises(ValueError, match="patches_to_grid"):
        fit_segmentation_probe(features.reshape(16, 16, 8), targets, NUM_CLASSES)
    with pytest.raises(ValueError, match="Targets must have shape"):
        fit_segmentation_probe(features, targets[:3], NUM_CLASSES)
    with pytest.raises(ValueError, match="class ids"):
        fit_segmentation_probe(features, targets + 5, NUM_CLASSES, method="ridge")
    with pytest.raises(ValueError, match="method"):
        fit_depth_probe(features, targets.astype(float), method="sgd")
    with pytest.raises(ValueError, match="No valid depth"):
        fit_depth_probe(features, np.zeros(targets.shape))
    with pytest.raises(ValueError, match="task"):
        LinearProbe(np.zeros((2, 1)), np.zeros(1), task="detection")


@pytest.mark.multibackend
def test_keras_segmentation_probe_learns_separable_toy():
    features, targets = separable_segmentation()
    targets = targets.copy()
    targets[:, 0, :3] = 255
    probe = fit_segmentation_probe(
        features[:12], targets[:12], NUM_CLASSES, epochs=30, learning_rate=0.05, batch_size=4
    )
    losses = probe.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    pred = probe.predict(features[12:], (8, 8))
    from keras_tips.evaluation.metrics import mean_iou

    assert mean_iou(pred, targets[12:], NUM_CLASSES, ignore_index=255) > 0.99


@pytest.mark.multibackend
def test_keras_depth_probe_fits_linear_depth():
    features, depth, _ = linear_depth()
    depth[:, 0, 0] = 0.0  # missing depth: left out by the default mask
    metrics = evaluate_depth_probe(
        features[:6], depth[:6], features[6:], depth[6:],
        method="keras", epochs=60, learning_rate=0.05, batch_size=2,
    )
    valid = depth[6:] > 0
    assert metrics["rmse"] < 0.15 * depth[6:][valid].std()


@pytest.mark.multibackend
def test_masked_losses_by_hand():
    import keras

    from keras_tips.evaluation.probes import _masked_cross_entropy
    from keras_tips.evaluation.probes import _masked_squared_error

    # Pixel 0: label 0, logits [0, ln 3] -> p = 1/4, CE = ln 4. Pixel 1 is
    # ignored (its logits would give a huge loss for any class).
    y_true = np.array([[[0.0, 255.0]]], "float32")
    logits = np.array([[[[0.0, np.log(3.0)], [-50.0, 50.0]]]], "float32")
    loss = _masked_cross_entropy(255)(keras.ops.convert_to_tensor(y_true), logits)
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(np.log(4.0), rel=1e-5)
    # Squared error over valid pixels: (1 - 3)^2 only.
    packed = np.array([[[[3.0, 1.0], [7.0, 0.0]]]], "float32")  # (target, valid)
    pred = np.array([[[[1.0], [100.0]]]], "float32")
    loss = _masked_squared_error(keras.ops.convert_to_tensor(packed), pred)
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(4.0)
