"""The evaluation and visualisation functions on a real (tiny, random) TIPS model.

Checks that they fit the model's output formats; the metric values of a
random model mean nothing.
"""

import numpy as np

from keras_tips.evaluation import build_zero_shot_classifier
from keras_tips.evaluation import evaluate_knn
from keras_tips.evaluation import evaluate_retrieval
from keras_tips.evaluation import evaluate_zero_shot
from keras_tips.evaluation import evaluate_zero_shot_segmentation
from keras_tips.evaluation import patches_to_grid
from keras_tips.evaluation import similarity_maps
from keras_tips.evaluation import zero_shot_predict
from keras_tips.visualize import pca_image
from keras_tips.visualize import similarity_overlay

CLASSES = ["dog", "cat", "car"]


def test_pipeline_on_tiny_model(tiny_model):
    rng = np.random.default_rng(0)
    images = rng.random((4, 56, 56, 3)).astype("float32")
    features = tiny_model.encode_images(images, return_value_patches=True)

    # A one-template classifier reproduces the model's own zero-shot head.
    classifier = build_zero_shot_classifier(
        tiny_model.encode_texts, CLASSES, ["a photo of a {}."], batch_size=2
    )
    logits = zero_shot_predict(
        features["cls_1"], classifier, tiny_model.temperature_for("cls_1")
    )
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(
        probabilities, tiny_model.classify(images, CLASSES), atol=1e-4
    )

    labels = np.array([0, 1, 2, 0])
    metrics = evaluate_zero_shot(features, labels, classifier)
    assert set(metrics) == {"cls_1/top1", "cls_1/top5", "cls_2/top1", "cls_2/top5"}
    assert metrics["cls_1/top5"] == 1.0  # k capped at 3 classes

    texts = tiny_model.encode_texts(["a dog", "a cat", "a red car", "a bus", "a tree"])
    retrieval = evaluate_retrieval(features["cls_1"], texts, [0, 1, 2, 3, 3])
    assert all(0.0 <= v <= 1.0 for v in retrieval.values())

    knn = evaluate_knn(features["cls_1"], labels, features["cls_1"], labels, k=1)
    assert knn["top1"] == 1.0  # each image is its own nearest neighbour

    grid = patches_to_grid(features["value_patches"], image_size=images.shape[1:3])
    assert grid.shape == (4, 4, 4, features["patches"].shape[-1])
    masks = rng.integers(0, 3, size=(4, 56, 56))
    segmentation = evaluate_zero_shot_segmentation(grid, classifier, masks)
    assert 0.0 <= segmentation["miou"] <= 1.0

    rgb = pca_image(patches_to_grid(features["patches"]), image_size=(56, 56))
    assert rgb.shape == (4, 56, 56, 3) and rgb.dtype == np.uint8
    overlay = similarity_overlay(images[0], similarity_maps(grid[0], texts[0]))
    assert overlay.shape == (56, 56, 3)
