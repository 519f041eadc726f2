"""Zero-shot image classification with text-prompt classifiers."""

import numpy as np

from keras_tips.evaluation.utils import l2_normalize
from keras_tips.evaluation.utils import ranks_of_targets

CLS_TOKENS = ("cls_1", "cls_2")


def _format_prompt(template, class_name):
    if callable(template):
        return template(class_name)
    if "{}" not in template:
        raise ValueError(
            f"Template {template!r} has no '{{}}' placeholder for the class name."
        )
    return template.format(class_name)


def build_zero_shot_classifier(encode_texts, class_names, templates, batch_size=256):
    """Builds the (C, D) text classifier of zero-shot classification.

    Every class name is put in every template; each class embedding is the
    L2-normalised mean of its L2-normalised template embeddings (the CLIP
    prompt-ensembling recipe).

    Args:
        encode_texts: callable `list[str] -> (T, D)` raw text embeddings,
            e.g. `model.encode_texts`.
        class_names: list of C class names.
        templates: list of format strings with one `{}` (e.g.
            `"a photo of a {}."`) or callables `name -> str`.
        batch_size: int. Prompts per `encode_texts` call.

    Returns:
        A float32 NumPy array (C, D) with unit-norm rows.

    Example:
    ```python
    classifier = build_zero_shot_classifier(
        model.encode_texts, ["dog", "cat"], ["a photo of a {}.", "a {}."]
    )
    ```
    """
    class_names = list(class_names)
    if isinstance(templates, str) or callable(templates):
        templates = [templates]
    templates = list(templates)
    if not class_names:
        raise ValueError("`class_names` is empty.")
    if not templates:
        raise ValueError("`templates` is empty.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1; received {batch_size}.")
    prompts = [_format_prompt(t, name) for name in class_names for t in templates]
    chunks = []
    for start in range(0, len(prompts), int(batch_size)):
        batch = prompts[start : start + int(batch_size)]
        embeddings = np.asarray(encode_texts(batch), dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(batch):
            raise ValueError(
                f"`encode_texts` returned shape {embeddings.shape} for "
                f"{len(batch)} texts; expected ({len(batch)}, D)."
            )
        chunks.append(l2_normalize(embeddings))
    embeddings = np.concatenate(chunks)
    embeddings = embeddings.reshape(len(class_names), len(templates), -1)
    return l2_normalize(embeddings.mean(axis=1))


def zero_shot_predict(image_embeddings, classifier, temperature=None):
    """Zero-shot logits: cosine(image, class) / temperature.

    Args:
        image_embeddings: (B, D) raw image embeddings (e.g. `"cls_1"`).
        classifier: (C, D) class embeddings (renormalised here, so raw ones
            are fine too).
        temperature: optional float. Divides the cosines (e.g. the model's
            learned temperature); `None` returns the cosines. Argmax and top-k
            do not depend on it.

    Returns:
        A float32 NumPy array (B, C).

    Example:
    ```python
    logits = zero_shot_predict(features["cls_1"], classifier, temperature=0.01)
    ```
    """
    images = l2_normalize(image_embeddings)
    classes = l2_normalize(classifier)
    if images.ndim != 2 or classes.ndim != 2 or images.shape[1] != classes.shape[1]:
        raise ValueError(
            f"Expected image embeddings (B, D) and a classifier (C, D); "
            f"received {images.shape} and {classes.shape}."
        )
    logits = images @ classes.T
    if temperature is not None:
        if not float(temperature) > 0:
            raise ValueError(f"`temperature` must be > 0; received {temperature}.")
        logits = logits / np.float32(temperature)
    return logits.astype(np.float32)


def top_k_accuracy(logits, labels, ks=(1, 5)):
    """Fraction of rows whose label is among the k highest logits.

    k is capped at the number of classes C (top-5 of 3 classes is top-3,
    i.e. 1.0). Ties count against the label: a row is correct at k only if
    fewer than k other classes score at least as high as the label, so all
    equal logits are never counted as correct at k < C.

    Args:
        logits: float array (B, C).
        labels: int array (B,) in [0, C).
        ks: iterable of positive ints.

    Returns:
        A dict `{k: accuracy}` (the requested k, not the capped one, as key)
        of Python floats.

    Example:
    ```python
    top_k_accuracy([[0.1, 0.9], [0.8, 0.2]], [1, 1], ks=(1,))  # {1: 0.5}
    ```
    """
    logits = np.asarray(logits, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int64)
    if logits.ndim != 2:
        raise ValueError(f"`logits` must be (B, C); received shape {logits.shape}.")
    if labels.shape != (logits.shape[0],):
        raise ValueError(
            f"`labels` must have shape ({logits.shape[0]},); received {labels.shape}."
        )
    if logits.shape[0] == 0:
        raise ValueError("Received no examples.")
    num_classes = logits.shape[1]
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"`labels` must lie in [0, {num_classes}); received values in "
            f"[{labels.min()}, {labels.max()}]."
        )
    ranks = ranks_of_targets(logits, labels)
    results = {}
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1; received {k}.")
        results[k] = float(np.mean(ranks < min(int(k), num_classes)))
    return results


def evaluate_zero_shot(image_features, labels, classifier, ks=(1, 5), cls_tokens=None):
    """Zero-shot top-k accuracy of each CLS token.

    Args:
        image_features: dict with `"cls_1"` and/or `"cls_2"` (B, D) raw image
            embeddings, e.g. the output of `model.encode_images`. Other
            entries (`"patches"`) are ignored.
        labels: int array (B,).
        classifier: (C, D) class embeddings from `build_zero_shot_classifier`.
        ks: the k of top-k accuracy (capped at C).
        cls_tokens: optional subset of `("cls_1", "cls_2")`; by default every
            one present in `image_features`.

    Returns:
        A dict of Python floats such as `{"cls_1/top1": ..., "cls_1/top5":
        ..., "cls_2/top1": ..., "cls_2/top5": ...}`.

    Example:
    ```python
    features = model.encode_images(images)
    metrics = evaluate_zero_shot(features, labels, classifier)
    metrics["cls_1/top1"]
    ```
    """
    if cls_tokens is None:
        cls_tokens = [name for name in CLS_TOKENS if name in image_features]
    if not cls_tokens:
        raise ValueError(
            f"`image_features` has none of {CLS_TOKENS}; received keys "
            f"{sorted(image_features)}."
        )
    metrics = {}
    for name in cls_tokens:
        if name not in image_features:
            raise ValueError(f"`image_features` has no {name!r} entry.")
        logits = zero_shot_predict(image_features[name], classifier)
        for k, value in top_k_accuracy(logits, labels, ks).items():
            metrics[f"{name}/top{k}"] = value
    return metrics
