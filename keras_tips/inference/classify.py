"""Zero-shot classification of image files (`keras-tips classify`)."""

import numpy as np

from keras_tips.evaluation.zero_shot import build_zero_shot_classifier


def zero_shot_classifier(model, class_names, templates):
    """The (C, D) text classifier of `class_names` under `model`.

    Each class is the L2-normalised mean of its L2-normalised template
    embeddings (CLIP's prompt ensembling, as `TIPSModel.classify`).

    Args:
        model: a `TIPSModel`.
        class_names: list of str.
        templates: list of format strings with one `{}`.

    Returns:
        A float32 array (C, D) with unit rows.
    """
    return build_zero_shot_classifier(model.encode_texts, class_names, templates)


def classify_image_files(model, batches, classifier, cls_token="cls_1"):
    """Zero-shot class probabilities of image files, batch by batch.

    The probabilities are `softmax(cosine(image, class) / temperature)` with
    the model's learned temperature of `cls_token`, as `TIPSModel.classify`.

    Args:
        model: a `TIPSModel`.
        batches: an `ImageFileBatches` over the files (it records the files
            it skips).
        classifier: (C, D) class embeddings (`zero_shot_classifier`).
        cls_token: `"cls_1"` (aligned with web captions, the default for
            zero-shot, as officially) or `"cls_2"`.

    Yields:
        `(indices, probabilities)`: the positions of a batch's images among
        the files, and their (b, C) float32 probabilities.

    Example:
    ```python
    batches = ImageFileBatches(paths, (448, 448))
    classifier = zero_shot_classifier(model, ["cat", "dog"], load_templates())
    for indices, probabilities in classify_image_files(model, batches, classifier):
        ...
    ```
    """
    for indices, images in batches:
        features = model.encode_images(images, batch_size=len(images))
        logits = model.zero_shot_logits(features[cls_token], classifier, cls_token)
        logits = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        yield indices, (probabilities / probabilities.sum(axis=1, keepdims=True)).astype(
            np.float32
        )
