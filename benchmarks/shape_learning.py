"""How fast the demo's image tower learns shapes, by its input settings.

A diagnosis of the shapes demo, not a speed benchmark: the tiny_shapes image
tower (its `model.vision` settings, on the recipe's scenes) is trained as a
plain supervised classifier of the most visible object's shape, a linear
layer on CLS1, with AdamW. If the tower cannot learn shape from the labels
themselves within the demo's step budget, the contrastive objective, whose
shape signal is far weaker, cannot either. Each arm changes only the
tower's input settings:

    python benchmarks/shape_learning.py [--recipe recipes/tiny_shapes.py] \
        [--steps 800] [--seeds 2] [--output benchmarks/RESULTS.md]

With `--output` the table replaces its section of that Markdown file.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

# Each arm: the `model.vision` settings it sets (the recipe's for the rest).
OFFICIAL_INPUT = dict(
    pixel_mean=0.0, pixel_std=1.0, position_initializer="truncated_normal"
)
ARMS = {
    "[0, 1] pixels, 0.02-normal positions (the official tower's start)": OFFICIAL_INPUT,
    "centred pixels": dict(OFFICIAL_INPUT, pixel_mean=0.5),
    "sinusoidal positions": dict(OFFICIAL_INPUT, position_initializer="sinusoidal"),
    "the recipe's settings": {},
}
NUM_TEST = 300  # test scenes scored
SECTION_BEGIN = "<!-- shape learning table: begin -->"
SECTION_END = "<!-- shape learning table: end -->"


def shape_split(data, split, count):
    """Images in [0, 1] and main-object shape labels of a shapes split."""
    from keras_tips.data.shapes import ShapesDataset

    dataset = ShapesDataset(
        split, count, data.image_size, max_objects=data.max_objects,
        object_scale=data.object_scale,
    )
    examples = [dataset[i] for i in range(count)]
    images = np.stack([e["image"] for e in examples]).astype("float32") / 255.0
    return images, np.array([e["label"] for e in examples])


def train_arm(vision, data, train, test, steps, batch_size, learning_rate, seed):
    """Test accuracy of a supervised shape classifier after `steps` steps."""
    import keras

    from keras_tips.data.shapes import SHAPE_CLASSES
    from keras_tips.models.tips_vision_encoder import TIPSVisionEncoder

    keras.utils.set_random_seed(seed)
    size = data.image_size
    inputs = keras.Input((size, size, 3))
    encoder = TIPSVisionEncoder(**vision)
    logits = keras.layers.Dense(len(SHAPE_CLASSES))(encoder(inputs)["cls_1"])
    model = keras.Model(inputs, logits)
    model.compile(
        keras.optimizers.AdamW(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    order = np.random.default_rng(seed).integers(0, len(train[1]), steps * batch_size)
    model.fit(
        train[0][order], train[1][order], batch_size=batch_size, epochs=1,
        verbose=0, shuffle=False,
    )
    return float(model.evaluate(test[0], test[1], verbose=0)[1])


def measure(recipe_path, steps, seeds, batch_size=32, learning_rate=1e-3,
            num_train=3000, num_test=NUM_TEST, arms=ARMS, progress=common.log):
    """`{arm: [test accuracy per seed]}` and the recipe it ran on."""
    from keras_tips.training.recipe import load_recipe

    recipe = load_recipe(recipe_path).resolve()
    data = recipe.data
    train = shape_split(data, "train", num_train)
    test = shape_split(data, "test", num_test)
    results = {}
    for name, settings in arms.items():
        vision = {**common.image_tower_settings(recipe), **settings}
        results[name] = []
        for seed in range(seeds):
            start = time.time()
            results[name].append(train_arm(
                vision, data, train, test, steps, batch_size, learning_rate, seed
            ))
            progress(f"{name}, seed {seed}: {results[name][-1]:.3f} "
                     f"({time.time() - start:.0f} s)")
    return results, recipe


def report(results, recipe, recipe_path, steps, num_test=NUM_TEST):
    """The Markdown section (with its markers)."""
    from keras_tips.data.shapes import SHAPE_CLASSES

    data = recipe.data
    rows = []
    for name, accuracies in results.items():
        rows.append([
            name,
            common.fmt(float(np.mean(accuracies)), 3),
            common.fmt(float(np.std(accuracies)), 3),
            ", ".join(f"{a:.3f}" for a in accuracies),
        ])
    table = common.markdown_table(
        ["tower input settings", "test accuracy", "std over seeds", "per seed"],
        rows,
    )
    return common.titled_section(
        SECTION_BEGIN,
        SECTION_END,
        "How fast the demo's image tower learns shapes",
        (
            f"`python benchmarks/shape_learning.py --recipe "
            f"{os.path.relpath(recipe_path, common.REPOSITORY_ROOT)} --steps {steps}` "
            f"at revision {common.git_revision()}: the recipe's image tower "
            f"trained as a supervised shape classifier (CLS1, linear layer, "
            f"AdamW 1e-3, batch 32) for {steps} steps on {data.image_size} px "
            f"scenes of at most {data.max_objects} object(s) at scale "
            f"{data.object_scale}; accuracy on {num_test} test scenes, chance "
            f"{1 / len(SHAPE_CLASSES):.3f}."
        ),
        table,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=common.TINY_SHAPES_RECIPE)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--output", help="Markdown file whose section to replace.")
    args = parser.parse_args(argv)
    results, recipe = measure(args.recipe, args.steps, args.seeds)
    markdown = report(results, recipe, args.recipe, args.steps)
    common.report_section(markdown, args.output, SECTION_BEGIN, SECTION_END)


if __name__ == "__main__":
    main()
