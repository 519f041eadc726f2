import numpy as np
import pytest

from keras_tips.evaluation.knn import evaluate_knn
from keras_tips.evaluation.knn import knn_votes
from keras_tips.evaluation.knn import nearest_neighbors

# Query [1, 0]; cosine similarities: a = 1, b = 0, c = cos 30deg, d = -1.
C30 = np.cos(np.pi / 6)
TRAIN = np.array([[1.0, 0.0], [0.0, 1.0], [C30, 0.5], [-1.0, 0.0]])
TRAIN_LABELS = np.array([0, 1, 1, 0])
QUERY = np.array([[2.0, 0.0]])  # not normalised on purpose


def test_nearest_neighbors_sorted_by_similarity():
    index, sims = nearest_neighbors(TRAIN, QUERY, k=3)
    np.testing.assert_array_equal(index, [[0, 2, 1]])
    np.testing.assert_allclose(sims, [[1.0, C30, 0.0]], atol=1e-6)
    # k > N is capped.
    index, _ = nearest_neighbors(TRAIN, QUERY, k=10)
    np.testing.assert_array_equal(index, [[0, 2, 1, 3]])


def test_temperature_weighting_by_hand():
    # k = 3 neighbours: a (label 0, sim 1), c (label 1, sim .866), b (label
    # 1, sim 0). T = 1: label 1 gets e^.866 + e^0 = 3.38 > e^1 = 2.72.
    votes = knn_votes(TRAIN, TRAIN_LABELS, QUERY, k=3, temperature=1.0)
    ratio = votes[0, 1] / votes[0, 0]
    assert ratio == pytest.approx((np.exp(C30) + 1.0) / np.exp(1.0), rel=1e-5)
    assert evaluate_knn(TRAIN, TRAIN_LABELS, QUERY, [1], k=3, temperature=1.0)["top1"] == 1.0
    # T = 0.07 (DINO): e^(1/.07) dominates -> label 0.
    assert evaluate_knn(TRAIN, TRAIN_LABELS, QUERY, [0], k=3, temperature=0.07)["top1"] == 1.0
    assert evaluate_knn(TRAIN, TRAIN_LABELS, QUERY, [1], k=3, temperature=0.07)["top1"] == 0.0


def test_top5_is_capped_and_zero_vote_ties_count_against():
    metrics = evaluate_knn(TRAIN, TRAIN_LABELS, QUERY, [0], k=1)
    assert metrics == {"top1": 1.0, "top5": 1.0}
    # k = 1: only a (label 0) votes. Label 1 has no vote and ties with
    # label 2 (no vote either); the tie counts against it, so it is not in
    # the top 2 although only one class is ahead of it.
    metrics = evaluate_knn(TRAIN, TRAIN_LABELS, QUERY, [1], k=1, num_classes=3, ks=(1, 2))
    assert metrics == {"top1": 0.0, "top2": 0.0}


def test_batched_scan_equals_single_pass():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(50, 8))
    labels = rng.integers(0, 5, 50)
    test = rng.normal(size=(13, 8))
    full = knn_votes(train, labels, test, k=7, num_classes=5)
    chunked = knn_votes(
        train, labels, test, k=7, num_classes=5, query_batch_size=4, train_batch_size=6
    )
    np.testing.assert_allclose(chunked, full, rtol=1e-5)
    # The scan keeps exactly the brute-force neighbours.
    index, _ = nearest_neighbors(train, test, k=7, query_batch_size=3, train_batch_size=5)
    normalized = train / np.linalg.norm(train, axis=1, keepdims=True)
    sims = test @ normalized.T
    expected = np.argsort(-sims, axis=1)[:, :7]
    np.testing.assert_array_equal(index, expected)


def test_errors():
    with pytest.raises(ValueError, match="train_labels"):
        knn_votes(TRAIN, [0, 1], QUERY)
    with pytest.raises(ValueError, match="temperature"):
        knn_votes(TRAIN, TRAIN_LABELS, QUERY, temperature=0.0)
    with pytest.raises(ValueError, match="Expected"):
        knn_votes(TRAIN, TRAIN_LABELS, np.ones((1, 3)))
