"""Image-text retrieval: recall@k in both directions, several captions per image."""

import numpy as np

from keras_tips.evaluation.utils import l2_normalize
from keras_tips.evaluation.utils import ranks_of_targets


def _check_inputs(image_embeddings, text_embeddings, text_image_ids):
    images = l2_normalize(image_embeddings)
    texts = l2_normalize(text_embeddings)
    ids = np.asarray(text_image_ids)
    if images.ndim != 2 or texts.ndim != 2 or images.shape[1] != texts.shape[1]:
        raise ValueError(
            "Expected image embeddings (I, D) and text embeddings (T, D); "
            f"received {images.shape} and {texts.shape}."
        )
    if images.shape[0] == 0 or texts.shape[0] == 0:
        raise ValueError("Received no images or no texts.")
    if ids.shape != (texts.shape[0],) or ids.dtype.kind not in "iu":
        raise ValueError(
            f"`text_image_ids` must be an int array ({texts.shape[0]},) giving "
            f"each text's image index; received shape {ids.shape}, dtype "
            f"{ids.dtype}."
        )
    ids = ids.astype(np.int64)
    if ids.min() < 0 or ids.max() >= images.shape[0]:
        raise ValueError(
            f"`text_image_ids` must lie in [0, {images.shape[0]}); received "
            f"values in [{ids.min()}, {ids.max()}]."
        )
    return images, texts, ids


def retrieval_ranks(image_embeddings, text_embeddings, text_image_ids, batch_size=1024):
    """Rank of the correct match of every query, in both directions.

    Scores are cosine similarities. Text -> image: the rank of the text's
    image among all images. Image -> text: the rank of the image's
    best-ranked caption among all texts (the other captions of the same
    image are not counted against it). Ties count against the correct match
    (see `utils.ranks_of_targets`).

    Args:
        image_embeddings: (I, D) image embeddings (raw or normalised).
        text_embeddings: (T, D) text embeddings (raw or normalised).
        text_image_ids: int array (T,): the index of each text's image.
        batch_size: int. Queries scored at a time (memory is
            `batch_size * max(I, T)` floats).

    Returns:
        `(image_to_text_ranks, text_to_image_ranks)`: int arrays (I,) and
        (T,), 0 = retrieved first. Images without any caption get rank -1.

    Example:
    ```python
    image_ranks, text_ranks = retrieval_ranks(images, texts, text_image_ids)
    worst_texts = np.argsort(-text_ranks)[:10]
    ```
    """
    images, texts, ids = _check_inputs(image_embeddings, text_embeddings, text_image_ids)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; received {batch_size}.")

    text_to_image = np.empty(texts.shape[0], dtype=np.int64)
    for start in range(0, texts.shape[0], batch_size):
        stop = start + batch_size
        scores = texts[start:stop] @ images.T
        text_to_image[start:stop] = ranks_of_targets(scores, ids[start:stop])

    image_to_text = np.full(images.shape[0], -1, dtype=np.int64)
    for start in range(0, images.shape[0], batch_size):
        stop = min(start + batch_size, images.shape[0])
        scores = images[start:stop] @ texts.T  # (b, T)
        correct = ids[None, :] == np.arange(start, stop)[:, None]
        has_caption = correct.any(axis=1)
        # The best correct caption's score; incorrect texts scoring at least
        # as high are ranked before it (NaN scores too).
        best = np.max(np.where(correct, scores, -np.inf), axis=1, keepdims=True)
        ahead = np.sum(~(scores < best) & ~correct, axis=1)
        image_to_text[start:stop] = np.where(has_caption, ahead, -1)
    return image_to_text, text_to_image


def evaluate_retrieval(
    image_embeddings, text_embeddings, text_image_ids, ks=(1, 5, 10), batch_size=1024
):
    """Image -> text and text -> image recall@k.

    Several captions may describe one image (COCO and Flickr30k have five):
    `text_image_ids[t]` is the image of text t. An image query counts as
    correct at k when any of its captions is among the k most similar
    texts; a text query when its image is among the k most similar images.
    Images without captions are left out of the image -> text recall (they
    stay candidates for text -> image). Ties count against the correct match.

    Args:
        image_embeddings: (I, D) image embeddings (e.g. `"cls_1"`).
        text_embeddings: (T, D) text embeddings.
        text_image_ids: int array (T,) in [0, I).
        ks: iterable of positive ints.
        batch_size: int. Queries scored at a time.

    Returns:
        A dict of Python floats: `"image_to_text/recall@{k}"` and
        `"text_to_image/recall@{k}"` for each k, and `"mean_recall"`, their
        average.

    Example:
    ```python
    metrics = evaluate_retrieval(
        features["cls_1"], model.encode_texts(captions), caption_image_ids
    )
    metrics["text_to_image/recall@1"]
    ```
    """
    image_ranks, text_ranks = retrieval_ranks(
        image_embeddings, text_embeddings, text_image_ids, batch_size
    )
    image_ranks = image_ranks[image_ranks >= 0]
    metrics = {}
    for k in ks:
        if int(k) < 1:
            raise ValueError(f"k must be >= 1; received {k}.")
        metrics[f"image_to_text/recall@{k}"] = float(np.mean(image_ranks < int(k)))
    for k in ks:
        metrics[f"text_to_image/recall@{k}"] = float(np.mean(text_ranks < int(k)))
    metrics["mean_recall"] = float(np.mean(list(metrics.values())))
    return metrics
