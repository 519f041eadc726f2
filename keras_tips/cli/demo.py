"""`keras-tips demo`: the whole embedded demo in one command."""

import json
import os

import numpy as np


def add_demo(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="Train tiny_shapes, evaluate it, draw pictures, reload the preset.",
        description=(
            "Pretrains the tiny_shapes recipe on the embedded shapes dataset "
            "(resuming if OUTPUT already holds a partial run), evaluates the "
            "exported preset (results.md / results.json), writes pictures "
            "(pca.png, similarity.png, zero_shot_segmentation.png, "
            "curves.png), then reloads the preset with "
            "TIPSModel.from_preset and prints a zero-shot prediction."
        ),
    )
    parser.add_argument("--output", default="runs/demo", help="run directory")
    parser.add_argument("--recipe", default=None, help="recipe file (default: recipes/tiny_shapes.py)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override, e.g. --set train.total_steps=100")
    parser.add_argument("--num-test", type=int, default=300, help="test scenes evaluated")
    parser.add_argument("--readme", default=None, metavar="FILE",
                        help="also write the results into FILE's demo section "
                             "(between its demo markers), e.g. README.md")
    parser.set_defaults(run=run_demo)


def _default_recipe():
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [
        os.path.join(os.getcwd(), "recipes", "tiny_shapes.py"),
        os.path.join(here, "..", "..", "recipes", "tiny_shapes.py"),
    ]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        "recipes/tiny_shapes.py not found; run from the repository root or "
        "pass --recipe."
    )


def run_demo(args):
    import argparse
    import time

    from keras_tips.cli.progress import TrainingProgress
    from keras_tips.cli.show import run_show
    from keras_tips.data import shapes
    from keras_tips.evaluation.shapes_benchmark import COLOUR_TEMPLATES
    from keras_tips.evaluation.shapes_benchmark import baseline_table
    from keras_tips.evaluation.shapes_benchmark import evaluate_on_shapes
    from keras_tips.evaluation.shapes_benchmark import main_object_colour
    from keras_tips.models.tips_model import TIPSModel
    from keras_tips.training.loop import pretrain
    from keras_tips.training.recipe import load_recipe

    recipe = load_recipe(args.recipe or _default_recipe(), args.overrides)
    data = recipe.data
    if args.readme:
        # Refused now, not after minutes of training.
        from keras_tips.cli.demo_table import check_readme

        check_readme(args.readme)
    start = time.time()
    print(f"[1/4] Pretraining {recipe.name} for {recipe.train.total_steps} steps in {args.output}")
    pretrain(recipe, args.output, verbose=0,
             callbacks=[TrainingProgress(recipe.train.total_steps, "Pretraining")])
    trained = time.time() - start
    preset = os.path.join(args.output, "preset")

    print("[2/4] Evaluating the exported preset beside its baselines")
    start = time.time()
    model = TIPSModel.from_preset(preset)
    evaluation = recipe.evaluation
    # The scenes hold as many objects, of the same scale, as in training
    # (evaluation.image_size follows data.image_size unless set).
    results = evaluate_on_shapes(
        model, evaluation.num_train, min(args.num_test, evaluation.num_test),
        evaluation.image_size, evaluation.probe_epochs,
        max_objects=data.max_objects, object_scale=data.object_scale,
    )
    results["time/train_seconds"] = trained
    results["time/evaluation_seconds"] = time.time() - start
    table = baseline_table(
        {k: v for k, v in results.items() if not k.startswith("time/")},
        title=f"{recipe.name} ({trained:.0f} s of training)",
    )
    print(table)
    with open(os.path.join(args.output, "results.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.join(args.output, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    if args.readme:
        from keras_tips.cli.demo_table import write_demo_section

        write_demo_section(results, args.readme)
        print(f"  wrote the demo section of {args.readme}")

    print("[3/4] Drawing pictures")
    run_show(argparse.Namespace(
        preset=preset, output=os.path.join(args.output, "pictures"), images=None,
        photos=False, num_images=6, image_size=data.image_size, query="a red circle",
        history=os.path.join(args.output, "history.jsonl"),
    ))

    print("[4/4] Reloading the preset and predicting zero-shot")
    reloaded = TIPSModel.from_preset(preset)
    example = shapes.ShapesDataset(
        "test", 1, data.image_size, max_objects=data.max_objects,
        object_scale=data.object_scale,
    )[0]
    image = example["image"].astype("float32")[None] / 255.0
    probabilities = reloaded.classify(
        image, list(shapes.SHAPE_CLASSES), list(shapes.ZERO_SHOT_TEMPLATES)
    )[0]
    best = int(np.argmax(probabilities))
    colours = reloaded.classify(
        image, list(shapes.COLOUR_NAMES), list(COLOUR_TEMPLATES)
    )[0]
    colour = int(np.argmax(colours))
    main = shapes.COLOUR_NAMES[main_object_colour(example)]
    print(f"  scene: {example['synthetic_caption']}")
    print(
        f"  zero-shot colour: {shapes.COLOUR_NAMES[colour]} (p={colours[colour]:.2f}); "
        f"shape: {shapes.SHAPE_CLASSES[best]} (p={probabilities[best]:.2f}); "
        f"most visible object: {main} {shapes.SHAPE_CLASSES[example['label']]}"
    )
    return 0
