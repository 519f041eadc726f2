"""Zero-shot semantic segmentation on an ADE20K-style folder.

Layout (that of ADE20K's `ADEChallengeData2016`):

```
ROOT/images[/SPLIT]/<name>.jpg        the pictures (any image suffix)
ROOT/annotations[/SPLIT]/<name>.png   one label map per picture, same name
```

and a class-names file, one name a line, for label ids 1, 2, ... in order.
Label maps follow ADE20K's convention (mmsegmentation's
`reduce_zero_label`): **0 is "other" / unlabelled and is ignored**, and id
k >= 1 is the k-th class name. An id above the number of names is refused.

Each picture is read as every other one is (`load_image`: upright, RGB,
resized to the model's size); its patch features are compared with the
class embeddings (prompt ensemble) by cosine similarity, the maps are
upsampled bilinearly to the label map's own size, and the most similar class
is taken per pixel (`zero_shot_segment`). Scored: mIoU over the classes
present in the labels or the predictions, and pixel accuracy, from one
confusion matrix accumulated over the whole folder. Memory holds one batch.
"""

import os

import numpy as np

from keras_tips.data.image_files import list_image_files
from keras_tips.data.image_files import load_label_map
from keras_tips.evaluation.metrics import confusion_matrix
from keras_tips.evaluation.metrics import segmentation_scores
from keras_tips.evaluation.prompts import load_templates
from keras_tips.evaluation.utils import patches_to_grid
from keras_tips.evaluation.zero_shot import build_zero_shot_classifier
from keras_tips.evaluation.zero_shot_segmentation import zero_shot_segment
from keras_tips.inference.image_batches import ImageFileBatches
from keras_tips.inference.image_batches import model_image_size

IGNORE_INDEX = -1
PATCH_FEATURES = ("value_patches", "patches")


def reduce_zero_label(labels, num_classes):
    """ADE20K label ids -> class ids: 0 (unlabelled) -> `IGNORE_INDEX`,
    k >= 1 -> k - 1.

    Args:
        labels: int array of label ids.
        num_classes: int. The number of class names.

    Returns:
        An int64 array of the same shape.
    """
    labels = np.asarray(labels, np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(
            f"Label ids must lie in [0, {num_classes}] (0 = unlabelled, k = the "
            f"k-th of {num_classes} class names); found ids in "
            f"[{labels.min()}, {labels.max()}]."
        )
    return np.where(labels == 0, IGNORE_INDEX, labels - 1)


def read_segmentation_folder(root, split=None):
    """Pairs the pictures and label maps of an ADE20K-style folder.

    Args:
        root: str. The folder holding `images/` and `annotations/`.
        split: optional str. A subfolder of both (`"validation"` for
            ADE20K).

    Returns:
        `(names, image_paths, label_paths)`: the picture names (relative to
        the images folder) and the paths of both files, sorted by name.
    """
    images = os.path.join(root, "images", split or "")
    annotations = os.path.join(root, "annotations", split or "")
    for folder in (images, annotations):
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"No folder {folder!r}: an ADE20K-style folder holds images/"
                f"{split + '/' if split else ''} and annotations/"
                f"{split + '/' if split else ''}."
            )
    names = list_image_files(images, recursive=True)
    if not names:
        raise ValueError(f"No images in {images}.")
    label_paths = [
        os.path.join(annotations, os.path.splitext(name)[0] + ".png") for name in names
    ]
    missing = [name for name, path in zip(names, label_paths) if not os.path.isfile(path)]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(names)} images have no label map in "
            f"{annotations} (the same name with .png), e.g. {missing[0]}."
        )
    return names, [os.path.join(images, n) for n in names], label_paths


def evaluate_segmentation_folder(
    model,
    root,
    class_names,
    split=None,
    templates=None,
    image_size=None,
    batch_size=8,
    patch_features="value_patches",
    progress=None,
):
    """Zero-shot segmentation mIoU of an ADE20K-style folder.

    Args:
        model: a `TIPSModel` (or any object with its `encode_images`,
            `encode_texts`, `patch_size` and `preprocessor`).
        root: str. The folder (see the module docstring).
        class_names: list of str; name k - 1 is label id k.
        split: optional str. Subfolder of `images/` and `annotations/`.
        templates: prompt templates (default: CLIP's 80 ImageNet ones).
        image_size: optional int or (height, width) the pictures are
            resized to before encoding; default the preset's.
        batch_size: int. Pictures per forward pass.
        patch_features: `"value_patches"` (the last block's value
            embeddings, as in the official TIPS notebooks; sharper maps) or
            `"patches"` (the output patch tokens).
        progress: optional callable `(iterable, description, total) ->
            iterable`.

    Returns:
        A dict: `"metrics"` (`zero_shot_segmentation/miou`,
        `zero_shot_segmentation/pixel_accuracy`), `"per_class_iou"` (class
        name -> IoU, None for classes absent from labels and predictions),
        `"counts"` (images, skipped, classes) and `"skipped"` (reasons).

    Example:
    ```python
    results = evaluate_segmentation_folder(
        model, "ADEChallengeData2016", read_class_names("ade20k_classes.txt"),
        split="validation",
    )
    results["metrics"]["zero_shot_segmentation/miou"]
    ```
    """
    if patch_features not in PATCH_FEATURES:
        raise ValueError(
            f"`patch_features` must be one of {PATCH_FEATURES}; received "
            f"{patch_features!r}."
        )
    class_names = list(class_names)
    num_classes = len(class_names)
    names, image_paths, label_paths = read_segmentation_folder(root, split)
    templates = load_templates() if templates is None else list(templates)
    classifier = build_zero_shot_classifier(model.encode_texts, class_names, templates)
    size = model_image_size(model, image_size)
    batches = ImageFileBatches(image_paths, size, batch_size)
    iterable = batches if progress is None else progress(
        batches, "segmenting", len(batches)
    )
    matrix = np.zeros((num_classes, num_classes), np.int64)
    misses = np.zeros(num_classes, np.int64)
    scored = 0
    for indices, images in iterable:
        features = model.encode_images(
            images,
            batch_size=len(images),
            return_value_patches=patch_features == "value_patches",
        )
        grid = patches_to_grid(
            features[patch_features], image_size=size, patch_size=model.patch_size
        )
        for row, index in enumerate(indices):
            try:
                target = reduce_zero_label(load_label_map(label_paths[index]), num_classes)
            except ValueError as error:
                raise ValueError(f"{label_paths[index]}: {error}") from error
            predicted = zero_shot_segment(grid[row : row + 1], classifier, target.shape)
            m, miss = confusion_matrix(predicted[0], target, num_classes, IGNORE_INDEX)
            matrix += m
            misses += miss
            scored += 1
    if not scored:
        raise ValueError(f"None of the {len(names)} pictures could be read.")
    scores = segmentation_scores(matrix, misses)
    per_class = {
        name: None if np.isnan(iou) else float(iou)
        for name, iou in zip(class_names, scores["per_class_iou"])
    }
    return {
        "metrics": {
            "zero_shot_segmentation/miou": float(scores["miou"]),
            "zero_shot_segmentation/pixel_accuracy": float(scores["pixel_accuracy"]),
        },
        "per_class_iou": per_class,
        "counts": {
            "images": scored,
            "skipped": len(batches.skipped),
            "classes": num_classes,
        },
        "skipped": [reason for _, reason in batches.skipped],
    }
