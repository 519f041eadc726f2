"""`keras-tips pretrain` and `keras-tips ablation`."""

import copy
import json
import os

from keras_tips.cli.options import add_dtype_argument


def add_pretrain(subparsers):
    parser = subparsers.add_parser(
        "pretrain",
        help="Pretrain TIPS from a recipe (resumes from the last checkpoint).",
        description=(
            "Runs a recipe file (a Python module with `recipe()`, see "
            "recipes/). Checkpoints are written atomically every "
            "train.steps_per_checkpoint steps under OUTPUT/checkpoints; "
            "running the same command again resumes from the last one, data "
            "position included. At the end the student is exported as a "
            "TIPSModel preset to OUTPUT/preset and the metrics of every "
            "logging window (train.log_every_steps) are in "
            "OUTPUT/history.jsonl (train.csv_log: OUTPUT/history.csv; "
            "train.tensorboard: OUTPUT/tensorboard). train.init_preset starts "
            "from a preset's weights (train.lock_image / train.lock_text "
            "freeze a tower)."
        ),
    )
    parser.add_argument("--recipe", required=True, help="recipe file, e.g. recipes/tiny_shapes.py")
    parser.add_argument("--output", required=True, help="run directory")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe field, e.g. --set train.total_steps=200 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-step progress bar")
    add_dtype_argument(parser, "the recipe's model.dtype, which this sets")
    parser.set_defaults(run=run_pretrain)


def dtype_overrides(overrides, dtype):
    """`overrides` with `model.dtype` set to `dtype` (when given); refuses a
    `--set model.dtype=...` that says otherwise."""
    if dtype is None:
        return list(overrides)
    for override in overrides:
        key, _, value = override.partition("=")
        if key.strip() == "model.dtype" and value.strip().strip("'\"") != dtype:
            raise ValueError(
                f"--dtype {dtype} contradicts --set {override}: give one of them."
            )
    return list(overrides) + [f"model.dtype={dtype!r}"]


def run_pretrain(args):
    from keras_tips.training.loop import pretrain
    from keras_tips.training.loop import read_history
    from keras_tips.training.recipe import load_recipe

    recipe = load_recipe(args.recipe, dtype_overrides(args.overrides, args.dtype))
    pretrain(recipe, args.output, verbose=0 if args.quiet else "auto")
    history = read_history(args.output)
    if history:
        last = history[-1]
        print(
            f"Trained {last['step']} steps: "
            + ", ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "step")
        )
    print(f"Preset: {os.path.join(args.output, 'preset')}")
    return 0


def add_ablation(subparsers):
    parser = subparsers.add_parser(
        "ablation",
        help="Run the TIPS ablation (CLIP -> +synthetic -> +distill -> +mask).",
        description=(
            "Trains four variants of a recipe, as in the TIPS paper's "
            "ablation: (1) CLIP on web captions only; (2) + synthetic "
            "captions on the second CLS; (3) + self-distillation; (4) + "
            "masked image modelling (the full objective). Each is evaluated "
            "on the shapes test split; the table is printed side by side "
            "and saved to OUTPUT/ablation.md and OUTPUT/ablation.json."
        ),
    )
    parser.add_argument("--recipe", default="recipes/tiny_shapes.py", help="base recipe file")
    parser.add_argument("--output", required=True, help="directory of the four runs")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a field of the base recipe for all four runs (repeatable)",
    )
    parser.set_defaults(run=run_ablation)


ABLATION_VARIANTS = {
    "clip_web": dict(use_synthetic_captions=False, distill_weight=0.0, mask_weight=0.0),
    "+synthetic": dict(use_synthetic_captions=True, distill_weight=0.0, mask_weight=0.0),
    "+distill": dict(use_synthetic_captions=True, mask_weight=0.0),
    "+mask (TIPS)": dict(use_synthetic_captions=True),
}


def ablation_recipes(base):
    """The four ablation variants of a base recipe (name -> recipe)."""
    variants = {}
    for name, changes in ABLATION_VARIANTS.items():
        recipe = copy.deepcopy(base)
        for key, value in changes.items():
            setattr(recipe.objective, key, value)
        recipe.name = f"{base.name}/{name}"
        variants[name] = recipe
    return variants


def run_ablation(args):
    from keras_tips.evaluation.shapes_benchmark import evaluate_on_shapes
    from keras_tips.evaluation.shapes_benchmark import format_table
    from keras_tips.models.tips_model import TIPSModel
    from keras_tips.training.loop import pretrain
    from keras_tips.training.recipe import load_recipe

    base = load_recipe(args.recipe, args.overrides)
    rows = {}
    for index, (name, recipe) in enumerate(ablation_recipes(base).items()):
        run_dir = os.path.join(args.output, f"{index + 1}_{_slug(name)}")
        print(f"[{index + 1}/4] {name}: training in {run_dir}")
        pretrain(recipe, run_dir, verbose=0)
        model = TIPSModel.from_preset(os.path.join(run_dir, "preset"))
        evaluation = base.evaluation
        rows[name] = evaluate_on_shapes(
            model, evaluation.num_train, evaluation.num_test,
            evaluation.image_size, evaluation.probe_epochs,
        )
    table = format_table(rows, title=f"Ablation of {base.name}")
    print(table)
    os.makedirs(args.output, exist_ok=True)
    with open(os.path.join(args.output, "ablation.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.join(args.output, "ablation.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    return 0


def _slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")
