"""Where the demo's shape-segmentation probe stands, and what limits it.

A diagnosis of the shapes demo, not a speed benchmark. The demo's
segmentation probe (a linear head on frozen final patch tokens, fitted on
the validation scenes and scored on the test scenes exactly as
`keras-tips demo` does) is run on four sets of features:

- `pretrained`: the patch tokens of a pretrained preset (the demo's);
- `pretrained, CLS1 appended`: the same tokens with the image's CLS1
  concatenated to every one of them. This is what the probe would reach if
  every patch knew what the image's CLS token knows;
- `supervised on the masks`: the recipe's image tower trained for the
  recipe's steps, batch and optimizer on the segmentation labels
  themselves (per-patch cross-entropy against patch-majority labels, a
  linear layer on the patch tokens). This is what this tower can learn in
  the demo's budget when it is told the answer;
- `random init`: the recipe's tower untrained.

Beside the pixel mIoU, a patch-level probe's accuracy on the test patches
is split by where the patch lies: *interior* patches (every pixel on the
object) look alike for every shape of a colour, so only context can tell
their shape; *edge* patches (most pixels, not all, on the object) see a
piece of the outline and must also be told from background.

    python benchmarks/segmentation_bounds.py --preset runs/demo/preset \
        [--recipe recipes/tiny_shapes.py] [--output benchmarks/RESULTS.md]

With `--output` the table replaces its section of that Markdown file.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

SECTION_BEGIN = "<!-- segmentation bounds table: begin -->"
SECTION_END = "<!-- segmentation bounds table: end -->"
FEATURE_SETS = (
    "pretrained",
    "pretrained, CLS1 appended",
    "supervised on the masks",
    "random init",
)


def shape_classes():
    """Classes of the shape masks: background and the shapes."""
    from keras_tips.evaluation.shapes_benchmark import SEGMENTATION_TASKS

    return SEGMENTATION_TASKS["segmentation_probe"][1]


def scene_splits(recipe):
    """The probe's (validation) and test splits, and the training scenes."""
    from keras_tips.evaluation.shapes_benchmark import load_split

    data, evaluation = recipe.data, recipe.evaluation
    scene = dict(max_objects=data.max_objects, object_scale=data.object_scale)
    size = evaluation.image_size
    return {
        "probe": load_split("validation", evaluation.num_train, size, **scene),
        "test": load_split("test", evaluation.num_test, size, **scene),
        "supervised": load_split(
            "train", data.num_examples, data.image_size, **scene
        ),
    }


def train_supervised_tower(recipe, scenes, steps, seed=0, progress=common.log):
    """The recipe's image tower trained on patch-majority shape labels.

    Same batch size and optimizer (schedule, weight decay, clipping) as the
    recipe; `steps` steps on the recipe's training scenes.

    Returns:
        A function images -> {"patches": (B, h, w, D), "cls_1": (B, D)}.
    """
    import keras

    from keras_tips.evaluation.utils import patch_majority_labels
    from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder
    from keras_tips.training.optimizers import build_optimizer

    keras.utils.set_random_seed(seed)
    images = scenes["images"]
    size = images.shape[1]
    num_classes = shape_classes()
    patch_size = recipe.model.vision["patch_size"]
    labels = patch_majority_labels(
        scenes["class_mask"], patch_size, num_classes
    ).reshape(len(images), -1)
    inputs = keras.Input((size, size, 3))
    outputs = TIPSVisionEncoder(**common.image_tower_settings(recipe))(inputs)
    model = keras.Model(
        inputs, keras.layers.Dense(num_classes)(outputs["patches"])
    )
    model.compile(
        build_optimizer(
            recipe.optimizer, total_steps=steps,
            warmup_steps=min(recipe.optimizer.warmup_steps, steps),
        ),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    batch_size = recipe.data.pipeline.batch_size
    order = np.random.default_rng(seed).integers(0, len(images), steps * batch_size)
    progress(f"training the supervised tower for {steps} steps")
    start = time.time()
    history = model.fit(
        images[order], labels[order], batch_size=batch_size, epochs=1,
        verbose=0, shuffle=False,
    ).history
    progress(
        f"supervised tower: {steps} steps in {time.time() - start:.0f} s, "
        f"final training loss {history['loss'][-1]:.3f}"
    )
    return _feature_function(keras.Model(inputs, outputs), patch_size)


def random_tower(recipe, seed=0):
    """The recipe's image tower, untrained, as a feature function."""
    import keras

    from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder

    keras.utils.set_random_seed(seed)
    size = recipe.evaluation.image_size
    inputs = keras.Input((size, size, 3))
    outputs = TIPSVisionEncoder(**common.image_tower_settings(recipe))(inputs)
    return _feature_function(
        keras.Model(inputs, outputs), recipe.model.vision["patch_size"]
    )


def _feature_function(tower, patch_size):
    from keras_tips.evaluation.utils import patches_to_grid

    def features(images):
        outputs = tower.predict(images, batch_size=64, verbose=0)
        return {
            "patches": patches_to_grid(
                outputs["patches"], image_size=images.shape[1:3],
                patch_size=patch_size,
            ),
            "cls_1": np.asarray(outputs["cls_1"]),
        }

    return features


def preset_features(preset):
    """A pretrained preset's CLS1 and patch grid, as a feature function."""
    from keras_tips.evaluation.shapes_benchmark import encode_split
    from keras_tips.models.tips_model import TIPSModel

    model = TIPSModel.from_preset(preset)
    return lambda images: encode_split(model, {"images": images})


def with_cls_appended(features):
    """Patch features with the image's CLS1 concatenated to every patch."""
    patches = features["patches"]
    cls = np.broadcast_to(
        features["cls_1"][:, None, None, :], patches.shape[:3] + (features["cls_1"].shape[-1],)
    )
    return {"patches": np.concatenate([patches, cls], axis=-1)}


def patch_positions(class_mask, patch_size):
    """Boolean (B, h, w) masks of interior and edge patches.

    Interior: every pixel on an object. Edge: most pixels, not all, on one.
    """
    batch, height, width = class_mask.shape
    on_object = (class_mask > 0).reshape(
        batch, height // patch_size, patch_size, width // patch_size, patch_size
    ).mean(axis=(2, 4))
    return {"interior": on_object == 1.0, "edge": (on_object > 0.5) & (on_object < 1.0)}


def score(train_features, test_features, probe, test, epochs, patch_size, seed=0):
    """Pixel mIoU of the demo's probe and patch-level shape accuracies."""
    from keras_tips.evaluation.probes import evaluate_segmentation_probe
    from keras_tips.evaluation.probes import fit_segmentation_probe
    from keras_tips.evaluation.utils import patch_majority_labels

    num_classes = shape_classes()
    pixel = evaluate_segmentation_probe(
        train_features, probe["class_mask"], test_features, test["class_mask"],
        num_classes=num_classes, epochs=epochs, seed=seed,
    )
    patch_probe = fit_segmentation_probe(
        train_features,
        patch_majority_labels(probe["class_mask"], patch_size, num_classes),
        num_classes=num_classes, epochs=epochs, seed=seed,
    )
    predicted = patch_probe.predict(test_features, output_size=test_features.shape[1:3])
    truth = patch_majority_labels(test["class_mask"], patch_size, num_classes)
    result = {"miou": pixel["miou"]}
    for where, mask in patch_positions(test["class_mask"], patch_size).items():
        correct = predicted[mask] == truth[mask]
        result[f"{where}_accuracy"] = float(correct.mean()) if correct.size else float("nan")
        result[f"{where}_patches"] = int(mask.sum())
    return result


def measure(recipe_path, pretrained, steps=None, overrides=(), progress=common.log):
    """`{feature set: scores}`, `"trivial"` mIoU, the resolved recipe and
    the supervised steps.

    Args:
        recipe_path: the recipe the pretrained features come from.
        pretrained: function images -> {"patches": (B, h, w, D), "cls_1":
            (B, D)}, e.g. `preset_features(preset)`.
        steps: supervised training steps (default: the recipe's).
        overrides: recipe overrides (`"key=value"`), e.g. a smaller
            `evaluation.num_train` or `data.num_examples`.
    """
    from keras_tips.training.recipe import load_recipe

    recipe = load_recipe(recipe_path, list(overrides)).resolve()
    steps = steps or recipe.train.total_steps
    splits = scene_splits(recipe)
    probe, test = splits["probe"], splits["test"]
    patch_size = recipe.model.vision["patch_size"]
    def encode(extract):
        return extract(probe["images"]), extract(test["images"])

    # The preset encodes each split once; the CLS-appended set reuses it.
    pretrained_probe, pretrained_test = encode(pretrained)
    feature_sets = {
        "pretrained": (pretrained_probe, pretrained_test),
        "pretrained, CLS1 appended": (
            with_cls_appended(pretrained_probe), with_cls_appended(pretrained_test)
        ),
        "supervised on the masks": encode(train_supervised_tower(
            recipe, splits["supervised"], steps, progress=progress
        )),
        "random init": encode(random_tower(recipe)),
    }
    results = {}
    for name in FEATURE_SETS:
        probe_features, test_features = feature_sets[name]
        results[name] = score(
            probe_features["patches"], test_features["patches"],
            probe, test, recipe.evaluation.probe_epochs, patch_size,
        )
        progress(f"{name}: mIoU {results[name]['miou']:.3f}")
    results["trivial"] = _trivial_miou(test["class_mask"])
    return results, recipe, steps


def _trivial_miou(class_mask):
    from keras_tips.evaluation.shapes_benchmark import constant_segmentation_scores

    return constant_segmentation_scores(class_mask, shape_classes())["miou"]


def report(results, recipe, recipe_path, preset, steps):
    """The Markdown section (with its markers)."""
    rows = []
    for name in FEATURE_SETS:
        scores = results[name]
        rows.append([
            name,
            common.fmt(scores["miou"], 3),
            common.fmt(scores["interior_accuracy"], 3),
            common.fmt(scores["edge_accuracy"], 3),
        ])
    counts = results[FEATURE_SETS[0]]
    table = common.markdown_table(
        ["patch features", "pixel mIoU", "interior patches: accuracy",
         "edge patches: accuracy"],
        rows,
    )
    data = recipe.data
    preset = os.path.abspath(preset)
    if preset.startswith(common.REPOSITORY_ROOT + os.sep):
        preset = os.path.relpath(preset, common.REPOSITORY_ROOT)
    return common.titled_section(
        SECTION_BEGIN,
        SECTION_END,
        "What limits the demo's segmentation probe",
        (
            f"`python benchmarks/segmentation_bounds.py --recipe "
            f"{os.path.relpath(recipe_path, common.REPOSITORY_ROOT)} --preset "
            f"{preset}` at revision {common.git_revision()}: the demo's linear "
            f"segmentation probe ({recipe.evaluation.num_train} validation scenes, "
            f"{recipe.evaluation.probe_epochs} epochs; {recipe.evaluation.num_test} "
            f"test scenes of {data.image_size} px) on four sets of patch features. "
            f"The supervised tower is the recipe's image tower trained for {steps} "
            f"steps (batch {data.pipeline.batch_size}, the recipe's optimizer) on "
            f"the masks' patch-majority labels. Accuracies are of a patch-level "
            f"probe on the test patches that lie wholly on the object (interior, "
            f"{counts['interior_patches']}) or mostly on it (edge, "
            f"{counts['edge_patches']}); predicting background everywhere scores "
            f"mIoU {results['trivial']:.3f}."
        ),
        table,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=common.TINY_SHAPES_RECIPE)
    parser.add_argument(
        "--preset", required=True,
        help="a preset pretrained with --recipe (e.g. runs/demo/preset).",
    )
    parser.add_argument(
        "--steps", type=int, help="supervised steps (default: the recipe's)."
    )
    parser.add_argument("--output", help="Markdown file whose section to replace.")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.preset):
        parser.error(
            f"--preset {args.preset!r} is not a directory: pass the `preset` "
            "folder of a finished run (`keras-tips demo` writes runs/demo/preset)."
        )
    results, recipe, steps = measure(
        args.recipe, preset_features(args.preset), args.steps
    )
    markdown = report(results, recipe, args.recipe, args.preset, steps)
    common.report_section(markdown, args.output, SECTION_BEGIN, SECTION_END)


if __name__ == "__main__":
    main()
