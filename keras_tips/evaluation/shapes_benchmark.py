"""All evaluations of a TIPS model on the embedded shapes dataset.

Zero-shot classification (CLS1 and CLS2) of the most visible object's shape
and colour, image->text and text->image retrieval with both captions, k-NN
on CLS features, linear probes on frozen patch features (semantic, colour
and foreground segmentation, at pixel level and at patch level, and depth),
and zero-shot segmentation (shapes and colours) from the value embeddings
of the last block. The probes train on the validation split and are scored
on the test split, so nothing here overlaps the pretraining (train) split.

Every probe is reported beside what it is worth without learning:

- `trivial/...`: a prediction that needs no features: background
  everywhere (segmentation) or the training split's mean depth;
- `random_init/...`: the same probe on the features of the same
  architecture with freshly initialised weights;
- `ceiling/...`: pixel-level segmentation when every patch knows the
  majority class of its pixels (one-hot patch labels, bilinearly upsampled
  like a probe's logits) — the most a patch grid of this size can draw;
- `chance/...`: the accuracy of guessing a class uniformly.

Keys of the trained model (`zero_shot/cls_1/top1`,
`segmentation_probe/miou`, `zero_shot_segmentation/miou`, ...) have no
prefix.
"""

import keras
import numpy as np

from keras_tips.data import shapes
from keras_tips.evaluation.knn import evaluate_knn
from keras_tips.evaluation.metrics import confusion_matrix
from keras_tips.evaluation.metrics import depth_metrics
from keras_tips.evaluation.metrics import segmentation_scores
from keras_tips.evaluation.probes import evaluate_depth_probe
from keras_tips.evaluation.probes import evaluate_segmentation_probe
from keras_tips.evaluation.retrieval import evaluate_retrieval
from keras_tips.evaluation.utils import bilinear_resize
from keras_tips.evaluation.utils import patch_majority_labels
from keras_tips.evaluation.utils import patches_to_grid
from keras_tips.evaluation.zero_shot import build_zero_shot_classifier
from keras_tips.evaluation.zero_shot import evaluate_zero_shot
from keras_tips.evaluation.zero_shot_segmentation import (
    evaluate_zero_shot_segmentation,
)

BACKGROUND_PROMPTS = ("a plain background.", "the background.")
# Zero-shot colour of the most visible object: a second zero-shot task whose
# words the web captions use as often as the shape names.
COLOUR_TEMPLATES = ("a {} shape.", "a {} object.", "something {}.")
PATCH_SIZE = 14
# Dense tasks: name -> (mask key of `load_split`, number of classes).
SEGMENTATION_TASKS = {
    "segmentation_probe": ("class_mask", len(shapes.SHAPE_CLASSES) + 1),
    "colour_probe": ("colour_mask", len(shapes.COLOUR_NAMES) + 1),
    "foreground_probe": ("foreground_mask", 2),
}


def main_object_colour(example):
    """Index into `shapes.COLOUR_NAMES` of the most visible object's colour."""
    main = max(example["objects"], key=lambda obj: obj["visible_pixels"])
    return shapes.COLOUR_NAMES.index(main["colour"])


def load_split(
    split, num_examples, image_size, seed=0, max_objects=4, object_scale=1.0
):
    """Images in [0, 1] and every label of a shapes split.

    Args:
        split: `"train"`, `"validation"` or `"test"`.
        num_examples: int.
        image_size: int. Side of the scenes.
        seed: int. Dataset seed.
        max_objects, object_scale: scene settings of `ShapesDataset`; use
            those of the pretraining data.

    Returns:
        A dict of arrays: `images` (B, H, W, 3) float32, `labels` (shape of
        the most visible object), `colour_labels`, `class_mask`,
        `colour_mask`, `foreground_mask` (B, H, W) int, `depth` (B, H, W)
        float32, and the caption lists `web_captions`, `synthetic_captions`.
    """
    dataset = shapes.ShapesDataset(
        split, num_examples, image_size, seed=seed, max_objects=max_objects,
        object_scale=object_scale,
    )
    examples = [dataset[i] for i in range(num_examples)]
    class_mask = np.stack([e["class_mask"] for e in examples])
    return {
        "images": np.stack([e["image"] for e in examples]).astype("float32") / 255.0,
        "labels": np.array([e["label"] for e in examples]),
        "colour_labels": np.array([main_object_colour(e) for e in examples]),
        "class_mask": class_mask,
        "colour_mask": np.stack([e["colour_mask"] for e in examples]),
        "foreground_mask": (class_mask > 0).astype(np.int64),
        "depth": np.stack([e["depth"] for e in examples]),
        "web_captions": [e["web_caption"] for e in examples],
        "synthetic_captions": [e["synthetic_caption"] for e in examples],
    }


def encode_split(model, split_data, batch_size=64):
    """CLS tokens, and patch / value-patch grids (B, h, w, D) of a split."""
    features = model.encode_images(
        split_data["images"], batch_size=batch_size, return_value_patches=True
    )
    size = split_data["images"].shape[1]
    for key in ("patches", "value_patches"):
        features[key] = patches_to_grid(features[key], image_size=(size, size))
    return features


def random_init_model(model, seed=0):
    """A `TIPSModel` of `model`'s architecture with freshly drawn weights."""
    from keras_tips.models.tips_model import TIPSModel

    keras.utils.set_random_seed(seed)
    backbone = keras.layers.deserialize(keras.layers.serialize(model.backbone))
    return TIPSModel(backbone, model.preprocessor)


def constant_segmentation_scores(masks, num_classes, label=0):
    """mIoU and pixel accuracy of predicting `label` at every pixel."""
    matrix, misses = confusion_matrix(
        np.full(masks.shape, label), masks, num_classes
    )
    scores = segmentation_scores(matrix, misses)
    return {k: scores[k] for k in ("miou", "pixel_accuracy")}


def patch_oracle_scores(masks, num_classes, patch_size=PATCH_SIZE):
    """Pixel mIoU of one-hot patch-majority labels, bilinearly upsampled."""
    patch_labels = patch_majority_labels(masks, patch_size, num_classes)
    matrix = np.zeros((num_classes, num_classes), np.int64)
    misses = np.zeros(num_classes, np.int64)
    eye = np.eye(num_classes, dtype=np.float32)
    for start in range(0, masks.shape[0], 16):
        logits = bilinear_resize(eye[patch_labels[start : start + 16]], masks.shape[1:])
        m, miss = confusion_matrix(
            np.argmax(logits, -1), masks[start : start + 16], num_classes
        )
        matrix += m
        misses += miss
    scores = segmentation_scores(matrix, misses)
    return {k: scores[k] for k in ("miou", "pixel_accuracy")}


def dense_probe_metrics(train, test, train_features, test_features, probe_epochs, seed):
    """Every linear probe on one set of patch features (un-prefixed keys).

    Segmentation probes are fitted and scored twice: at pixel level (logits
    bilinearly upsampled to the image, `<task>/miou`) and at patch level
    against `patch_majority_labels` (`<task>/patch_miou`).
    """
    results = {}
    train_grid, test_grid = train_features["patches"], test_features["patches"]
    for task, (key, num_classes) in SEGMENTATION_TASKS.items():
        pixel = evaluate_segmentation_probe(
            train_grid, train[key], test_grid, test[key],
            num_classes=num_classes, epochs=probe_epochs, seed=seed,
        )
        results[f"{task}/miou"] = pixel["miou"]
        results[f"{task}/pixel_accuracy"] = pixel["pixel_accuracy"]
        patch = evaluate_segmentation_probe(
            train_grid, patch_majority_labels(train[key], PATCH_SIZE, num_classes),
            test_grid, patch_majority_labels(test[key], PATCH_SIZE, num_classes),
            num_classes=num_classes, epochs=probe_epochs, seed=seed,
        )
        results[f"{task}/patch_miou"] = patch["miou"]
    depth = evaluate_depth_probe(
        train_grid, train["depth"], test_grid, test["depth"]
    )
    results["depth_probe/rmse"] = depth["rmse"]
    return results


def knn_metrics(train, test, train_features, test_features):
    results = {}
    for cls_token in ("cls_1", "cls_2"):
        knn = evaluate_knn(
            train_features[cls_token], train["labels"],
            test_features[cls_token], test["labels"],
            k=10, num_classes=len(shapes.SHAPE_CLASSES), ks=(1,),
        )
        results[f"knn/{cls_token}/top1"] = knn["top1"]
    return results


def baseline_metrics(train, test):
    """The `trivial/`, `ceiling/` and `chance/` entries (no model needed)."""
    results = {
        "chance/zero_shot_top1": 1.0 / len(shapes.SHAPE_CLASSES),
        "chance/zero_shot_colour_top1": 1.0 / len(shapes.COLOUR_NAMES),
        "chance/knn_top1": 1.0 / len(shapes.SHAPE_CLASSES),
    }
    for task, (key, num_classes) in SEGMENTATION_TASKS.items():
        results[f"trivial/{task}/miou"] = constant_segmentation_scores(
            test[key], num_classes
        )["miou"]
        results[f"trivial/{task}/patch_miou"] = constant_segmentation_scores(
            patch_majority_labels(test[key], PATCH_SIZE, num_classes), num_classes
        )["miou"]
        results[f"ceiling/{task}/miou"] = patch_oracle_scores(test[key], num_classes)[
            "miou"
        ]
    results["trivial/zero_shot_segmentation/miou"] = results[
        "trivial/segmentation_probe/miou"
    ]
    results["trivial/zero_shot_segmentation_colour/miou"] = results[
        "trivial/colour_probe/miou"
    ]
    mean_depth = np.full(test["depth"].shape, train["depth"].mean(), np.float32)
    results["trivial/depth_probe/rmse"] = depth_metrics(mean_depth, test["depth"])["rmse"]
    return results


def evaluate_on_shapes(
    model,
    num_train=400,
    num_test=300,
    image_size=56,
    probe_epochs=30,
    seed=0,
    max_objects=4,
    object_scale=1.0,
    baselines=True,
):
    """Runs every evaluation; returns a flat dict of metrics.

    Zero-shot classification is scored twice: the shape class of the most
    visible object (`zero_shot/`, chance 1/6) and its colour
    (`zero_shot_colour/`, chance 1/6). See the module docstring for the
    probes and the `trivial/`, `random_init/`, `ceiling/` and `chance/`
    baselines.

    Args:
        model: a `TIPSModel` (with a tokenizer).
        num_train: examples of the validation split used to fit probes and
            as the k-NN memory.
        num_test: examples of the test split that are scored.
        image_size: side of the rendered scenes (multiple of 14).
        probe_epochs: epochs of the Keras segmentation probes.
        seed: dataset seed; also seeds Keras (probe shuffling, the random
            initialisation of the `random_init/` baseline).
        max_objects, object_scale: scene settings of `ShapesDataset` (those
            the model was trained on).
        baselines: bool. Also compute the `random_init/` probes (twice the
            probe time) and the model-free baselines.
    """
    keras.utils.set_random_seed(seed)
    scene = dict(seed=seed, max_objects=max_objects, object_scale=object_scale)
    train = load_split("validation", num_train, image_size, **scene)
    test = load_split("test", num_test, image_size, **scene)
    train_features = encode_split(model, train)
    test_features = encode_split(model, test)
    results = {}

    classifier = build_zero_shot_classifier(
        model.encode_texts, list(shapes.SHAPE_CLASSES), list(shapes.ZERO_SHOT_TEMPLATES)
    )
    colour_classifier = build_zero_shot_classifier(
        model.encode_texts, list(shapes.COLOUR_NAMES), list(COLOUR_TEMPLATES)
    )
    for prefix, labels, texts in (
        ("zero_shot", test["labels"], classifier),
        ("zero_shot_colour", test["colour_labels"], colour_classifier),
    ):
        scores = evaluate_zero_shot(
            {k: test_features[k] for k in ("cls_1", "cls_2")}, labels, texts, ks=(1,)
        )
        results.update({f"{prefix}/{k}": v for k, v in scores.items()})

    for kind in ("synthetic", "web"):
        texts = model.encode_texts(test[f"{kind}_captions"])
        for cls_token in ("cls_1", "cls_2"):
            retrieval = evaluate_retrieval(
                test_features[cls_token], texts, np.arange(num_test), ks=(1, 5)
            )
            for key, value in retrieval.items():
                if "recall@" in key:
                    results[f"retrieval_{kind}/{cls_token}/{key}"] = value

    results.update(knn_metrics(train, test, train_features, test_features))
    results.update(
        dense_probe_metrics(
            train, test, train_features, test_features, probe_epochs, seed
        )
    )

    background = model.normalize(model.encode_texts(list(BACKGROUND_PROMPTS))).mean(0)
    background = background[None] / np.linalg.norm(background)
    for prefix, texts, key in (
        ("zero_shot_segmentation", classifier, "class_mask"),
        ("zero_shot_segmentation_colour", colour_classifier, "colour_mask"),
    ):
        scores = evaluate_zero_shot_segmentation(
            test_features["value_patches"], np.concatenate([background, texts]),
            test[key],
        )
        results[f"{prefix}/miou"] = scores["miou"]

    if baselines:
        results.update(baseline_metrics(train, test))
        random_model = random_init_model(model, seed)
        random_train = encode_split(random_model, train)
        random_test = encode_split(random_model, test)
        random_results = knn_metrics(train, test, random_train, random_test)
        random_results.update(
            dense_probe_metrics(
                train, test, random_train, random_test, probe_epochs, seed
            )
        )
        results.update({f"random_init/{k}": v for k, v in random_results.items()})
    return {k: float(v) for k, v in results.items()}


BASELINE_PREFIXES = ("trivial", "random_init", "ceiling", "chance")


# The `chance/` entry of each metric family that has one.
_CHANCE_KEYS = {
    "zero_shot/": "chance/zero_shot_top1",
    "zero_shot_colour/": "chance/zero_shot_colour_top1",
    "knn/": "chance/knn_top1",
}


def chance_key(metric):
    """The `chance/...` key of a metric's chance level ("" when it has
    none)."""
    return next((c for p, c in _CHANCE_KEYS.items() if metric.startswith(p)), "")


def baseline_table(results, title=None):
    """A Markdown table: every trained metric beside its baselines.

    Args:
        results: a dict from `evaluate_on_shapes`.
        title: optional heading.
    """
    lines = [f"### {title}", ""] if title else []
    lines.append("| metric | trained | " + " | ".join(BASELINE_PREFIXES) + " |")
    lines.append("|---|---:|" + "---:|" * len(BASELINE_PREFIXES))
    for metric, value in results.items():
        if metric.split("/", 1)[0] in BASELINE_PREFIXES:
            continue
        cells = []
        for prefix in BASELINE_PREFIXES:
            key = chance_key(metric) if prefix == "chance" else f"{prefix}/{metric}"
            cells.append(f"{results[key]:.3f}" if key in results else "")
        lines.append(f"| {metric} | {value:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_table(rows, title=None):
    """A Markdown table of metric rows: `{column name: {metric: value}}`."""
    names = list(rows)
    metrics = []
    for row in rows.values():
        metrics += [m for m in row if m not in metrics]
    lines = [f"### {title}", ""] if title else []
    lines.append("| metric | " + " | ".join(names) + " |")
    lines.append("|---|" + "---|" * len(names))
    for metric in metrics:
        cells = [
            f"{rows[n][metric]:.3f}" if metric in rows[n] else "" for n in names
        ]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
