"""All evaluations of a TIPS model on the embedded shapes dataset.

Zero-shot classification (CLS1 and CLS2), image->text and text->image
retrieval with the synthetic captions, k-NN on CLS features, linear probes
for semantic segmentation and depth on frozen patch features, and zero-shot
segmentation from the value embeddings of the last block. The probes train
on the validation split and are scored on the test split, so nothing here
overlaps the pretraining (train) split.
"""

import numpy as np

from keras_tips.data import shapes
from keras_tips.evaluation.knn import evaluate_knn
from keras_tips.evaluation.probes import evaluate_depth_probe
from keras_tips.evaluation.probes import evaluate_segmentation_probe
from keras_tips.evaluation.retrieval import evaluate_retrieval
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


def main_object_colour(example):
    """Index into `shapes.COLOUR_NAMES` of the most visible object's colour."""
    main = max(example["objects"], key=lambda obj: obj["visible_pixels"])
    return shapes.COLOUR_NAMES.index(main["colour"])


def load_split(split, num_examples, image_size, seed=0):
    """Images in [0, 1] and every label of a shapes split."""
    dataset = shapes.ShapesDataset(split, num_examples, image_size, seed=seed)
    examples = [dataset[i] for i in range(num_examples)]
    return {
        "images": np.stack([e["image"] for e in examples]).astype("float32") / 255.0,
        "labels": np.array([e["label"] for e in examples]),
        "colour_labels": np.array([main_object_colour(e) for e in examples]),
        "class_mask": np.stack([e["class_mask"] for e in examples]),
        "depth": np.stack([e["depth"] for e in examples]),
        "web_captions": [e["web_caption"] for e in examples],
        "synthetic_captions": [e["synthetic_caption"] for e in examples],
    }


def encode_split(model, split_data, batch_size=64):
    features = model.encode_images(
        split_data["images"], batch_size=batch_size, return_value_patches=True
    )
    size = split_data["images"].shape[1]
    for key in ("patches", "value_patches"):
        features[key] = patches_to_grid(features[key], image_size=(size, size))
    return features


def evaluate_on_shapes(
    model,
    num_train=400,
    num_test=300,
    image_size=56,
    probe_epochs=30,
    seed=0,
):
    """Runs every evaluation; returns a flat dict of metrics.

    Zero-shot classification is scored twice: the shape class of the most
    visible object (`zero_shot/`, chance 1/6) and its colour
    (`zero_shot_colour/`, chance 1/6).

    Args:
        model: a `TIPSModel` (with a tokenizer).
        num_train: examples of the validation split used to fit probes and
            as the k-NN memory.
        num_test: examples of the test split that are scored.
        image_size: side of the rendered scenes (multiple of 14).
        probe_epochs: epochs of the Keras segmentation probe.
        seed: dataset seed.
    """
    train = load_split("validation", num_train, image_size, seed)
    test = load_split("test", num_test, image_size, seed)
    train_features = encode_split(model, train)
    test_features = encode_split(model, test)
    results = {}

    classifier = build_zero_shot_classifier(
        model.encode_texts, list(shapes.SHAPE_CLASSES), list(shapes.ZERO_SHOT_TEMPLATES)
    )
    zero_shot = evaluate_zero_shot(
        {k: test_features[k] for k in ("cls_1", "cls_2")},
        test["labels"],
        classifier,
        ks=(1,),
    )
    results.update({f"zero_shot/{k}": v for k, v in zero_shot.items()})
    colour_classifier = build_zero_shot_classifier(
        model.encode_texts, list(shapes.COLOUR_NAMES), list(COLOUR_TEMPLATES)
    )
    zero_shot_colour = evaluate_zero_shot(
        {k: test_features[k] for k in ("cls_1", "cls_2")},
        test["colour_labels"],
        colour_classifier,
        ks=(1,),
    )
    results.update({f"zero_shot_colour/{k}": v for k, v in zero_shot_colour.items()})

    for kind in ("synthetic", "web"):
        texts = model.encode_texts(test[f"{kind}_captions"])
        for cls_token in ("cls_1", "cls_2"):
            retrieval = evaluate_retrieval(
                test_features[cls_token], texts, np.arange(num_test), ks=(1, 5)
            )
            for key, value in retrieval.items():
                if "recall@" in key:
                    results[f"retrieval_{kind}/{cls_token}/{key}"] = value

    for cls_token in ("cls_1", "cls_2"):
        knn = evaluate_knn(
            train_features[cls_token], train["labels"],
            test_features[cls_token], test["labels"],
            k=10, num_classes=len(shapes.SHAPE_CLASSES), ks=(1,),
        )
        results[f"knn/{cls_token}/top1"] = knn["top1"]

    num_classes = len(shapes.SHAPE_CLASSES) + 1
    segmentation = evaluate_segmentation_probe(
        train_features["patches"], train["class_mask"],
        test_features["patches"], test["class_mask"],
        num_classes=num_classes, epochs=probe_epochs, seed=seed,
    )
    results["segmentation_probe/miou"] = segmentation["miou"]
    results["segmentation_probe/pixel_accuracy"] = segmentation["pixel_accuracy"]
    depth = evaluate_depth_probe(
        train_features["patches"], train["depth"],
        test_features["patches"], test["depth"],
    )
    results["depth_probe/rmse"] = depth["rmse"]

    background = model.normalize(model.encode_texts(list(BACKGROUND_PROMPTS))).mean(0)
    class_texts = np.concatenate([background[None] / np.linalg.norm(background), classifier])
    zero_shot_seg = evaluate_zero_shot_segmentation(
        test_features["value_patches"], class_texts, test["class_mask"]
    )
    results["zero_shot_segmentation/miou"] = zero_shot_seg["miou"]
    return {k: float(v) for k, v in results.items()}


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
