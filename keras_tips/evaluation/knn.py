"""Weighted k-nearest-neighbour classification of global (CLS) features.

The DINO protocol: features are L2-normalised, a query's k most
cosine-similar training examples vote for their labels with weight
`exp(similarity / temperature)`, and the class with the largest vote wins.
"""

import numpy as np

from keras_tips.evaluation.utils import l2_normalize
from keras_tips.evaluation.zero_shot import top_k_accuracy


def _top_k(similarities, k):
    """Indices and values of the k largest entries per row (unordered)."""
    k = min(k, similarities.shape[1])
    if k == similarities.shape[1]:
        index = np.broadcast_to(np.arange(k), similarities.shape).copy()
    else:
        index = np.argpartition(-similarities, k - 1, axis=1)[:, :k]
    return index, np.take_along_axis(similarities, index, axis=1)


def nearest_neighbors(
    train_features, test_features, k=20, query_batch_size=256, train_batch_size=65536
):
    """The k most cosine-similar training examples of every query.

    Memory is bounded by `query_batch_size * train_batch_size` similarities:
    training features are scanned in chunks while a running top-k is kept,
    so the training set may be large (ImageNet-1k: 1.28M).

    Args:
        train_features: (N, D) features (normalised here).
        test_features: (Q, D) features (normalised here).
        k: int. Neighbours per query (capped at N).
        query_batch_size: int. Queries per step.
        train_batch_size: int. Training examples per step.

    Returns:
        `(indices, similarities)`, each (Q, min(k, N)), sorted by decreasing
        similarity. Among equal similarities at the k-th place, which
        neighbours are kept is unspecified.

    Example:
    ```python
    index, sims = nearest_neighbors(train["cls_1"], test["cls_1"], k=20)
    ```
    """
    train = l2_normalize(train_features)
    test = l2_normalize(test_features)
    if train.ndim != 2 or test.ndim != 2 or train.shape[1] != test.shape[1]:
        raise ValueError(
            f"Expected train (N, D) and test (Q, D) features; received "
            f"{train.shape} and {test.shape}."
        )
    if train.shape[0] == 0 or test.shape[0] == 0:
        raise ValueError("Received no training or no test examples.")
    k, query_batch_size, train_batch_size = int(k), int(query_batch_size), int(train_batch_size)
    if min(k, query_batch_size, train_batch_size) < 1:
        raise ValueError("`k` and the batch sizes must be >= 1.")
    k = min(k, train.shape[0])
    all_index = np.empty((test.shape[0], k), dtype=np.int64)
    all_sims = np.empty((test.shape[0], k), dtype=np.float32)
    for q_start in range(0, test.shape[0], query_batch_size):
        queries = test[q_start : q_start + query_batch_size]
        best_index = np.empty((queries.shape[0], 0), dtype=np.int64)
        best_sims = np.empty((queries.shape[0], 0), dtype=np.float32)
        for t_start in range(0, train.shape[0], train_batch_size):
            sims = queries @ train[t_start : t_start + train_batch_size].T
            index, values = _top_k(sims, k)
            candidates = np.concatenate([best_index, index + t_start], axis=1)
            candidate_sims = np.concatenate([best_sims, values], axis=1)
            keep, best_sims = _top_k(candidate_sims, k)
            best_index = np.take_along_axis(candidates, keep, axis=1)
        order = np.argsort(-best_sims, axis=1, kind="stable")
        stop = q_start + queries.shape[0]
        all_index[q_start:stop] = np.take_along_axis(best_index, order, axis=1)
        all_sims[q_start:stop] = np.take_along_axis(best_sims, order, axis=1)
    return all_index, all_sims


def knn_votes(
    train_features,
    train_labels,
    test_features,
    k=20,
    temperature=0.07,
    num_classes=None,
    query_batch_size=256,
    train_batch_size=65536,
):
    """Class votes of a weighted k-NN classifier (DINO style).

    Each of a query's k nearest neighbours (cosine similarity s) adds
    `exp(s / temperature)` to the vote of its label.

    Args:
        train_features: (N, D) features, e.g. `"cls_1"` of the training set.
        train_labels: int array (N,).
        test_features: (Q, D) features.
        k: int. Neighbours (capped at N).
        temperature: float > 0.
        num_classes: optional int; by default `max(train_labels) + 1`.
        query_batch_size: int. Queries per step.
        train_batch_size: int. Training examples per step.

    Returns:
        A float32 NumPy array (Q, C) of votes.

    Example:
    ```python
    votes = knn_votes(train["cls_1"], train_labels, test["cls_1"])
    pred = votes.argmax(axis=1)
    ```
    """
    train_labels = np.asarray(train_labels).astype(np.int64)
    if train_labels.shape != (np.shape(train_features)[0],):
        raise ValueError(
            f"`train_labels` must have shape ({np.shape(train_features)[0]},); "
            f"received {train_labels.shape}."
        )
    if not float(temperature) > 0:
        raise ValueError(f"`temperature` must be > 0; received {temperature}.")
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    if train_labels.min() < 0 or train_labels.max() >= num_classes:
        raise ValueError(f"`train_labels` must lie in [0, {num_classes}).")
    index, sims = nearest_neighbors(
        train_features, test_features, k, query_batch_size, train_batch_size
    )
    # Subtracting the best similarity keeps exp() finite for small
    # temperatures and scales each query's votes equally (argmax unchanged).
    weights = np.exp((sims - sims[:, :1]) / np.float32(temperature))
    votes = np.zeros((index.shape[0], int(num_classes)), dtype=np.float64)
    np.add.at(votes, (np.arange(index.shape[0])[:, None], train_labels[index]), weights)
    return votes.astype(np.float32)


def evaluate_knn(
    train_features,
    train_labels,
    test_features,
    test_labels,
    k=20,
    temperature=0.07,
    num_classes=None,
    ks=(1, 5),
    query_batch_size=256,
    train_batch_size=65536,
):
    """Weighted k-NN top-1 (and top-5) accuracy of frozen features.

    Args:
        train_features: (N, D) raw or normalised features.
        train_labels: int array (N,).
        test_features: (Q, D) features.
        test_labels: int array (Q,).
        k: int. Neighbours; DINO reports k = 20 (and 200).
        temperature: float. Vote weights are `exp(cosine / temperature)`.
        num_classes: optional int; by default one more than the largest label
            of either split.
        ks: the top-k accuracies to report (capped at the number of classes).
        query_batch_size: int. Queries per step.
        train_batch_size: int. Training examples per step.

    Returns:
        A dict of Python floats, `{"top1": ..., "top5": ...}` for the default
        `ks`. A query is correct at top-1 only if its class has strictly the
        largest vote (ties count against it, see `top_k_accuracy`).

    Example:
    ```python
    metrics = evaluate_knn(train["cls_1"], train_labels, test["cls_1"], test_labels)
    metrics["top1"]
    ```
    """
    test_labels = np.asarray(test_labels).astype(np.int64)
    if num_classes is None:
        num_classes = int(max(np.max(train_labels), np.max(test_labels))) + 1
    votes = knn_votes(
        train_features,
        train_labels,
        test_features,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
        query_batch_size=query_batch_size,
        train_batch_size=train_batch_size,
    )
    return {f"top{k_}": v for k_, v in top_k_accuracy(votes, test_labels, ks).items()}
