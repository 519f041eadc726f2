"""`keras-tips pretrain` and `keras-tips ablation`."""

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
        help="Run the TIPS and TIPSv2 ablation (CLIP -> ... -> +mask -> TIPSv2) over seeds.",
        description=(
            "Trains the arms of a recipe, as in the TIPS paper's ablation: "
            "(1) CLIP on web captions only; (2) + synthetic captions on the "
            "second CLS; (3) + self-distillation; (4) + masked image "
            "modelling (the full objective); then TIPSv2's: (5) + the patch "
            "loss on every token (iBOT++); (6) + multi-granularity captions; "
            "(7) + a heads-only EMA teacher. An arm that sets a recipe field "
            "this version does not have is refused, naming the field, unless "
            "--skip-unavailable-arms. Every arm runs once per seed and is "
            "evaluated on the shapes test split. Finished runs are not repeated. "
            "Prints mean ± std over seeds and saves OUTPUT/ablation.json "
            "(every number) and OUTPUT/ablation.md; with --readme, also "
            "writes the table into that file between its ablation markers."
        ),
    )
    parser.add_argument("--recipe", default="recipes/tiny_shapes.py", help="base recipe file")
    parser.add_argument("--output", required=True, help="directory of the runs")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a field of the base recipe for every run (repeatable)",
    )
    parser.add_argument(
        "--arms", nargs="+", default=None, metavar="ARM",
        help="the arms to run, by name (default: all: clip_web +synthetic +distill "
        "'+mask (TIPS)' +iBOT++ '+multi-granularity captions' '+heads-only EMA (TIPSv2)')",
    )
    parser.add_argument(
        "--skip-unavailable-arms", action="store_true",
        help="leave out (and list) the arms that set a recipe field this version does "
        "not have, instead of refusing to start",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--readme", default=None, help="Markdown file whose ablation section to rewrite")
    parser.set_defaults(run=run_ablation)


def run_ablation(args):
    from keras_tips.training import ablation
    from keras_tips.training.recipe import load_recipe

    arms = ablation.ABLATION_ARMS
    if args.arms:
        unknown = [name for name in args.arms if name not in arms]
        if unknown:
            raise SystemExit(f"Unknown ablation arm(s) {unknown}; the arms are {list(arms)}.")
        arms = {name: arms[name] for name in args.arms}
    base = load_recipe(args.recipe, args.overrides)
    try:
        raw = ablation.run_ablation(
            base, args.output, seeds=args.seeds, arms=arms,
            skip_unavailable=args.skip_unavailable_arms,
        )
    except ValueError as error:
        raise SystemExit(str(error)) from error
    table = ablation.ablation_markdown(raw)
    print(table)
    with open(os.path.join(args.output, "ablation.md"), "w", encoding="utf-8") as f:
        f.write(f"### Ablation of {base.name}\n\n{table}\n")
    if args.readme:
        ablation.write_readme_section(args.readme, table)
        print(f"Wrote the table into {args.readme}.")
    return 0
