"""Classification on a folder of class folders (the ImageNet layout).

`ROOT/<class>/.../<image>`: one subfolder per class, holding that class's
images (at any depth). Class ids follow the sorted folder names, the order
of torchvision's `ImageFolder` and of ImageNet's class index, so a file of
class names (one a line) in that order names them. ImageNet's folders are
WordNet ids (`n01440764`): pass the readable names (`tench`, ...), without
them the folder names are the class names (`_` read as a space).

Scored: zero-shot top-1/top-5 with a prompt ensemble (by default CLIP's 80
ImageNet templates), for CLS1 and CLS2; and, given a second folder of the
same classes as the k-NN memory (ImageNet's `train/` for its `val/`),
weighted k-NN top-1/top-5 (DINO's protocol, k = 20, T = 0.07).
"""

import dataclasses
import os
import re

import numpy as np

from keras_tips.data.image_files import list_image_files
from keras_tips.evaluation.knn import evaluate_knn
from keras_tips.evaluation.prompts import load_templates
from keras_tips.evaluation.zero_shot import CLS_TOKENS
from keras_tips.evaluation.zero_shot import build_zero_shot_classifier
from keras_tips.evaluation.zero_shot import evaluate_zero_shot
from keras_tips.inference.embed import encode_image_files

_WORDNET_ID = re.compile(r"^n\d{8}$")


@dataclasses.dataclass
class ClassFolderImages:
    """The images of a class-folder tree.

    Attributes:
        root: the folder.
        class_folders: the class folder names, sorted (class id = position).
        paths: every image file, class by class.
        labels: int64 array, the class id of each path.
    """

    root: str
    class_folders: list
    paths: list
    labels: np.ndarray


def read_class_folders(root, class_folders=None):
    """Lists the images of a class-folder tree (see the module docstring).

    Args:
        root: str. The folder of class folders.
        class_folders: optional list of the class folder names another split
            has (e.g. the evaluated one, for a k-NN memory): this tree must
            have the same ones.

    Returns:
        A `ClassFolderImages`.

    Example:
    ```python
    val = read_class_folders("imagenet/val")
    len(val.class_folders), len(val.paths)  # 1000, 50000
    ```
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"No folder {root!r}.")
    folders = sorted(
        name
        for name in os.listdir(root)
        if os.path.isdir(os.path.join(root, name)) and not name.startswith(".")
    )
    if not folders:
        raise ValueError(
            f"{root} has no class folders: expected one subfolder per class "
            "holding its images (ROOT/<class>/<image>)."
        )
    if class_folders is not None and folders != list(class_folders):
        missing = sorted(set(class_folders) - set(folders))
        extra = sorted(set(folders) - set(class_folders))
        raise ValueError(
            f"The class folders of {root} differ from those evaluated: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"extra {extra[:5]}{'...' if len(extra) > 5 else ''}."
        )
    paths, labels = [], []
    for label, folder in enumerate(folders):
        for name in list_image_files(os.path.join(root, folder), recursive=True):
            paths.append(os.path.join(root, folder, name))
            labels.append(label)
    if not paths:
        raise ValueError(f"The class folders of {root} hold no images.")
    return ClassFolderImages(root, folders, paths, np.asarray(labels, np.int64))


def class_names_of(class_folders, class_names=None):
    """The names of the classes: `class_names` (checked against the number
    of folders) or the folder names, `_` read as a space."""
    if class_names is not None:
        class_names = list(class_names)
        if len(class_names) != len(class_folders):
            raise ValueError(
                f"{len(class_names)} class names for {len(class_folders)} class "
                "folders: give one name per folder, in sorted folder order."
            )
        return class_names
    if all(_WORDNET_ID.match(folder) for folder in class_folders):
        raise ValueError(
            f"The class folders are WordNet ids ({class_folders[0]}, ...), "
            "not words a text encoder knows: pass the class names (one a line, "
            "in sorted folder order), e.g. ImageNet's readable class names."
        )
    return [folder.replace("_", " ") for folder in class_folders]


def evaluate_image_folder(
    model,
    images_dir,
    support_dir=None,
    class_names=None,
    templates=None,
    image_size=None,
    batch_size=32,
    knn_k=20,
    knn_temperature=0.07,
    progress=None,
):
    """Zero-shot (and k-NN) classification of a class-folder tree.

    Args:
        model: a `TIPSModel` (or any object with its `encode_images`,
            `encode_texts`, `patch_size` and `preprocessor`).
        images_dir: str. The evaluated class folders.
        support_dir: optional str. Class folders of the same classes used
            as the k-NN memory; without it k-NN is not scored.
        class_names: optional list of names, one per class folder in sorted
            order (see `class_names_of`).
        templates: prompt templates (default: CLIP's 80 ImageNet ones).
        image_size: optional int or (height, width); default the preset's.
        batch_size: int. Images per forward pass.
        knn_k: int. Neighbours of the k-NN vote.
        knn_temperature: float. Temperature of the k-NN vote weights.
        progress: optional callable `(iterable, description, total) ->
            iterable`.

    Returns:
        A dict: `"metrics"` (`zero_shot/cls_1/top1`, `.../top5`, the same
        for `cls_2`, and `knn/cls_*/top1`, `top5` with a support folder),
        `"counts"` (images scored, skipped, classes, support images) and
        `"skipped"` (reasons of the unreadable files).

    Example:
    ```python
    results = evaluate_image_folder(
        model, "imagenet/val", support_dir="imagenet/train",
        class_names=read_class_names("imagenet_classes.txt"),
    )
    results["metrics"]["zero_shot/cls_1/top1"]
    ```
    """
    query = read_class_folders(images_dir)
    names = class_names_of(query.class_folders, class_names)
    templates = load_templates() if templates is None else list(templates)
    features, kept, skipped = encode_image_files(
        model, query.paths, CLS_TOKENS, image_size, batch_size, progress
    )
    labels = query.labels[kept]
    classifier = build_zero_shot_classifier(model.encode_texts, names, templates)
    metrics = {
        f"zero_shot/{key}": value
        for key, value in evaluate_zero_shot(features, labels, classifier).items()
    }
    counts = {
        "images": int(len(kept)),
        "skipped": len(skipped),
        "classes": len(names),
        "templates": len(templates),
    }
    reasons = [reason for _, reason in skipped]
    if support_dir is not None:
        support = read_class_folders(support_dir, query.class_folders)
        support_features, support_kept, support_skipped = encode_image_files(
            model, support.paths, CLS_TOKENS, image_size, batch_size, progress
        )
        for token in CLS_TOKENS:
            knn = evaluate_knn(
                support_features[token], support.labels[support_kept],
                features[token], labels, k=knn_k, temperature=knn_temperature,
                num_classes=len(names),
            )
            metrics.update({f"knn/{token}/{key}": value for key, value in knn.items()})
        counts["support_images"] = int(len(support_kept))
        counts["support_skipped"] = len(support_skipped)
        reasons += [reason for _, reason in support_skipped]
    return {"metrics": metrics, "counts": counts, "skipped": reasons}
