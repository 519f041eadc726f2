"""The TIPS ablation: which part of the objective teaches what.

Each arm is a set of recipe overrides (as `keras-tips pretrain --set` takes
them) applied to a base recipe, cumulatively as in the TIPS paper's
ablation (Table 1 of TIPS, ViT-B) and then TIPSv2's (Table 4 of TIPSv2):

| arm | objective |
|---|---|
| `clip_web` | CLIP: CLS1 against the web captions only |
| `+synthetic` | + CLS2 against the synthetic captions |
| `+distill` | + DINO self-distillation of CLS1 (α) |
| `+mask (TIPS)` | + iBOT masked image modelling of the patches (β) |
| `+iBOT++` | + the patch loss on every token, not only the masked ones |
| `+multi-granularity captions` | + synthetic captions at several granularities |
| `+heads-only EMA (TIPSv2)` | + a teacher that shares the student's encoder |

An arm that sets a field the recipe schema does not have (a TIPSv2 option
of a version without it) is refused before anything trains, naming the
field; `run_ablation(..., skip_unavailable=True)` leaves such arms out
instead and records which and why.

`run_ablation` trains and evaluates every arm once per seed (the training
seed: weights and data order; the dataset and the evaluation stay fixed),
skipping runs already finished, and keeps every number in
`ablation.json`. `summarize` reduces the seeds to mean and standard
deviation, `summary_table` prints them, and `write_readme_section` puts the
table into a Markdown file between two markers, so the README never holds a
hand-copied number.

Example:
```python
base = load_recipe("recipes/tiny_shapes.py")
raw = run_ablation(base, "runs/ablation", seeds=(0, 1, 2))
print(summary_table(summarize(raw)))
```
"""

import copy
import dataclasses
import json
import math
import os
import time

from keras_tips.atomic_files import write_atomically


def _field(override):
    """The field path a `key=value` override sets."""
    return override.split("=", 1)[0].strip()


def _with(arm, *overrides):
    """`arm`'s overrides with `overrides` added, each replacing the arm's own
    value of the same field."""
    fields = {_field(override) for override in overrides}
    kept = tuple(o for o in arm if _field(o) not in fields)
    return kept + tuple(overrides)


# TIPSv2's options at TIPS's values. Every TIPS arm sets them, so that it is
# the objective it names whatever the base recipe uses (`tiny_shapes` itself
# trains with iBOT++).
_TIPS_OPTIONS = (
    "objective.mask_loss_tokens='masked'",
    "data.multi_granularity_captions=False",
    "objective.teacher='ema'",
)
# Each arm: the overrides that turn the base recipe into it (the base's own
# values for everything else, such as the weights of the terms it keeps).
# Cumulative: each arm adds one part.
TIPS_ARMS = {
    "clip_web": _TIPS_OPTIONS + (
        "objective.use_synthetic_captions=False",
        "objective.distill_weight=0.0",
        "objective.mask_weight=0.0",
    ),
    "+synthetic": _TIPS_OPTIONS + (
        "objective.use_synthetic_captions=True",
        "objective.distill_weight=0.0",
        "objective.mask_weight=0.0",
    ),
    "+distill": _TIPS_OPTIONS + (
        "objective.use_synthetic_captions=True", "objective.mask_weight=0.0",
    ),
    "+mask (TIPS)": _TIPS_OPTIONS + ("objective.use_synthetic_captions=True",),
}
_IBOT_PLUS_PLUS = _with(TIPS_ARMS["+mask (TIPS)"], "objective.mask_loss_tokens='all'")
_CAPTIONS = _with(_IBOT_PLUS_PLUS, "data.multi_granularity_captions=True")
TIPSV2_ARMS = {
    "+iBOT++": _IBOT_PLUS_PLUS,
    "+multi-granularity captions": _CAPTIONS,
    "+heads-only EMA (TIPSv2)": _with(_CAPTIONS, "objective.teacher='heads_only'"),
}
ABLATION_ARMS = {**TIPS_ARMS, **TIPSV2_ARMS}
RESULTS_FILE = "ablation.json"
README_BEGIN = "<!-- ablation table: begin (written by keras-tips ablation) -->"
README_END = "<!-- ablation table: end -->"
# The README's rows: (metric key, label, "higher" or "lower" is better).
README_METRICS = (
    ("segmentation_probe/miou", "segmentation probe mIoU (pixels)", "higher"),
    ("segmentation_probe/patch_miou", "segmentation probe mIoU (patches)", "higher"),
    ("colour_probe/miou", "colour segmentation probe mIoU", "higher"),
    ("foreground_probe/miou", "foreground probe mIoU", "higher"),
    ("depth_probe/rmse", "depth probe RMSE", "lower"),
    ("zero_shot_segmentation/miou", "zero-shot segmentation mIoU (shapes)", "higher"),
    ("zero_shot_segmentation_colour/miou", "zero-shot segmentation mIoU (colours)", "higher"),
    ("zero_shot/cls_1/top1", "zero-shot shape, CLS1 top-1", "higher"),
    ("zero_shot_colour/cls_1/top1", "zero-shot colour, CLS1 top-1", "higher"),
    ("knn/cls_1/top1", "10-NN shape, CLS1 top-1", "higher"),
    ("retrieval_synthetic/cls_2/image_to_text/recall@1", "synthetic retrieval, CLS2 image→text R@1", "higher"),
    ("retrieval_synthetic/cls_2/text_to_image/recall@1", "synthetic retrieval, CLS2 text→image R@1", "higher"),
    ("train/distill_teacher_entropy", "DINO teacher entropy at the end (nats)", "lower"),
    ("train/mask_teacher_entropy", "iBOT teacher entropy at the end (nats)", "lower"),
    ("time/train_seconds", "training time (s)", "lower"),
)


def missing_fields(recipe, overrides):
    """The fields that `overrides` set and the recipe schema does not have.

    A field is missing when a part of its path names no field of its
    settings dataclass. The encoder arguments (`model.vision`,
    `model.text`) are open dicts: a new key there is not missing.

    Args:
        recipe: a `PretrainRecipe`.
        overrides: `key=value` strings.

    Returns:
        The missing field paths (as written in the overrides), in order.
    """
    missing = []
    for override in overrides:
        path = _field(override)
        target = recipe
        for name in path.split("."):
            if isinstance(target, dict):
                break
            if not dataclasses.is_dataclass(target) or name not in {
                f.name for f in dataclasses.fields(target)
            }:
                missing.append(path)
                break
            target = getattr(target, name)
    return missing


def unavailable_arms(base, arms=None):
    """`{arm: [missing field paths]}` of the arms that `base`'s recipe
    schema cannot express (see `missing_fields`)."""
    unavailable = {}
    for name, overrides in (ABLATION_ARMS if arms is None else arms).items():
        missing = missing_fields(base, overrides)
        if missing:
            unavailable[name] = missing
    return unavailable


def ablation_recipes(base, arms=None):
    """The arms of a base recipe: `{name: recipe}` (copies; base unchanged).

    Args:
        base: a `PretrainRecipe`.
        arms: optional `{name: overrides}` (`key=value` strings); default
            `ABLATION_ARMS`.

    Raises:
        ValueError: an arm sets a field the recipe schema does not have
            (every such arm and field is named), or a value the recipe
            refuses.
    """
    arms = ABLATION_ARMS if arms is None else arms
    unavailable = unavailable_arms(base, arms)
    if unavailable:
        listed = "; ".join(
            f"{name!r} sets {', '.join(fields)}" for name, fields in unavailable.items()
        )
        raise ValueError(
            f"Ablation arms set fields this recipe schema does not have: "
            f"{listed}. Leave those arms out (keras-tips ablation --arms ...), "
            "or skip them explicitly (--skip-unavailable-arms)."
        )
    from keras_tips.training.recipe import apply_overrides

    variants = {}
    for name, overrides in arms.items():
        recipe = apply_overrides(copy.deepcopy(base), overrides)
        try:
            recipe.validate()
        except ValueError as error:
            raise ValueError(f"Ablation arm {name!r}: {error}") from error
        recipe.name = f"{base.name}/{name}"
        variants[name] = recipe
    return variants


def run_schedule(recipe):
    """What every run of an ablation shares, for the table's caption: the
    recipe's training steps, batch and image size."""
    return {
        "total_steps": int(recipe.train.total_steps),
        "batch_size": int(recipe.data.pipeline.batch_size),
        "image_size": int(recipe.data.image_size),
    }


def without_terms_left_out(recipe, results):
    """A run's metrics without the training logs of the terms its objective
    leaves out.

    The pretrainer logs every term each step, as 0 when the term is off; a
    teacher entropy of 0 in the table would read as a perfectly sharp
    teacher rather than as no teacher, so those entries are dropped.

    Args:
        recipe: the run's `PretrainRecipe`.
        results: `{metric: value}`, with the training logs under `train/`.
    """
    objective = recipe.objective
    prefixes = []
    if not objective.use_synthetic_captions:
        prefixes += [
            "train/contrastive_synthetic", "train/accuracy_synthetic",
            "train/temperature_synthetic",
        ]
    if not objective.distill_weight:
        prefixes.append("train/distill")
    if not objective.mask_weight:
        prefixes.append("train/mask")
    if not objective.koleo_weight:
        prefixes.append("train/koleo")
    return {
        key: value
        for key, value in results.items()
        if not any(key.startswith(prefix) for prefix in prefixes)
    }


def run_directory(output_dir, arm, seed):
    """Where one arm's run with one seed lives."""
    slug = "".join(c if c.isalnum() else "_" for c in arm).strip("_")
    return os.path.join(output_dir, f"{slug}_seed{seed}")


def run_ablation(
    base, output_dir, seeds=(0, 1, 2), arms=None, evaluate=None, log=print,
    skip_unavailable=False,
):
    """Trains and evaluates every arm once per seed; returns the raw results.

    A run whose `results.json` exists is not repeated, so the command can be
    stopped and started again; `ablation.json` is rewritten after each run.

    Args:
        base: a validated `PretrainRecipe`.
        output_dir: str. One sub-folder per run, and `ablation.json`.
        seeds: training seeds (`train.seed`).
        arms: optional `{name: overrides}`, default `ABLATION_ARMS`.
        evaluate: callable `(recipe, preset_dir) -> dict of metrics`; by
            default `evaluate_recipe_preset` (the shapes benchmark).
        log: callable for progress lines.
        skip_unavailable: bool. Leave out the arms that set fields the
            recipe schema does not have (logged, and listed under
            `"skipped"`) instead of refusing to start.

    Returns:
        `{"recipe": base name, "seeds": [...], "schedule":
        run_schedule(base), "runs": {arm: {seed: metrics}}, "skipped":
        {arm: reason}}`.
    """
    from keras_tips.training.loop import pretrain
    from keras_tips.training.loop import read_history

    evaluate = evaluate or evaluate_recipe_preset
    arms = ABLATION_ARMS if arms is None else arms
    skipped = {}
    if skip_unavailable:
        for name, fields in unavailable_arms(base, arms).items():
            skipped[name] = f"the recipe schema has no field {', '.join(fields)}"
            log(f"Skipping arm {name!r}: {skipped[name]}.")
        arms = {name: o for name, o in arms.items() if name not in skipped}
    variants = ablation_recipes(base, arms)
    raw = {
        "recipe": base.name, "seeds": [int(s) for s in seeds],
        "schedule": run_schedule(base), "runs": {}, "skipped": skipped,
    }
    total = len(variants) * len(seeds)
    index = 0
    for arm, recipe in variants.items():
        raw["runs"][arm] = {}
        for seed in seeds:
            index += 1
            run_dir = run_directory(output_dir, arm, seed)
            results_path = os.path.join(run_dir, "results.json")
            if os.path.isfile(results_path):
                with open(results_path, encoding="utf-8") as f:
                    raw["runs"][arm][str(seed)] = without_terms_left_out(
                        recipe, json.load(f)
                    )
                log(f"[{index}/{total}] {arm}, seed {seed}: done before ({run_dir})")
                continue
            log(f"[{index}/{total}] {arm}, seed {seed}: training in {run_dir}")
            seeded = copy.deepcopy(recipe)
            seeded.train.seed = int(seed)
            start = time.time()
            pretrain(seeded, run_dir, verbose=0)
            seconds = time.time() - start
            results = dict(evaluate(seeded, os.path.join(run_dir, "preset")))
            history = read_history(run_dir)
            if history:
                for key, value in history[-1].items():
                    if key != "step":
                        results[f"train/{key}"] = float(value)
            results = without_terms_left_out(seeded, results)
            results["time/train_seconds"] = seconds
            write_atomically(results_path, json.dumps(results, indent=1))
            raw["runs"][arm][str(seed)] = results
            os.makedirs(output_dir, exist_ok=True)
            write_atomically(
                os.path.join(output_dir, RESULTS_FILE), json.dumps(raw, indent=1)
            )
    os.makedirs(output_dir, exist_ok=True)
    write_atomically(os.path.join(output_dir, RESULTS_FILE), json.dumps(raw, indent=1))
    return raw


def evaluate_recipe_preset(recipe, preset_dir):
    """The shapes benchmark of an exported preset, on the recipe's scenes
    (without the random-init probes, which do not depend on the arm)."""
    from keras_tips.evaluation.shapes_benchmark import evaluate_on_shapes
    from keras_tips.models.tips_model import TIPSModel

    model = TIPSModel.from_preset(preset_dir)
    evaluation = recipe.evaluation
    return evaluate_on_shapes(
        model,
        evaluation.num_train,
        evaluation.num_test,
        evaluation.image_size,
        evaluation.probe_epochs,
        max_objects=recipe.data.max_objects,
        object_scale=recipe.data.object_scale,
        baselines=False,
    )


def summarize(raw):
    """Mean and sample standard deviation over seeds of every metric.

    Args:
        raw: the dict `run_ablation` returns (or `ablation.json`).

    Returns:
        `{arm: {metric: {"mean", "std", "n"}}}`; `std` is 0 for one seed.
    """
    summary = {}
    for arm, by_seed in raw["runs"].items():
        metrics = {}
        for results in by_seed.values():
            for key, value in results.items():
                metrics.setdefault(key, []).append(float(value))
        summary[arm] = {}
        for key, values in metrics.items():
            finite = [v for v in values if math.isfinite(v)]
            n = len(finite)
            mean = sum(finite) / n if n else float("nan")
            var = sum((v - mean) ** 2 for v in finite) / (n - 1) if n > 1 else 0.0
            summary[arm][key] = {"mean": mean, "std": math.sqrt(var), "n": n}
    return summary


def summary_table(summary, metrics=README_METRICS, digits=3):
    """A Markdown table, one column per arm, cells `mean ± std`.

    Args:
        summary: from `summarize`.
        metrics: `(key, label, better)` rows; rows no arm has are left out.
        digits: decimals.
    """
    arms = list(summary)
    seeds = sorted({stats["n"] for arm in arms for stats in summary[arm].values()})
    lines = [
        "| metric | " + " | ".join(arms) + " |",
        "|---|" + "---:|" * len(arms),
    ]
    for key, label, better in metrics:
        if not any(key in summary[arm] for arm in arms):
            continue
        cells = []
        for arm in arms:
            stats = summary[arm].get(key)
            if stats is None or stats["n"] == 0:
                cells.append("")
            else:
                cells.append(f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}")
        arrow = "↑" if better == "higher" else "↓"
        lines.append(f"| {label} {arrow} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"Mean ± standard deviation over {'/'.join(str(s) for s in seeds)} "
        "training seeds (↑ higher is better, ↓ lower is better)."
    )
    return "\n".join(lines)


# The dense metrics the TIPS paper reports improving at every arm (ViT-B:
# segmentation 64.4 -> 70.3 -> 75.9 mIoU, depth RMSE 0.589 -> 0.511).
PAPER_ORDER = (
    ("segmentation_probe/miou", "higher"),
    ("depth_probe/rmse", "lower"),
)


def order_notes(summary, metrics=PAPER_ORDER):
    """Whether each metric of `metrics` improves from arm to arm (in the
    summary's order, by mean), as in the paper; one sentence each."""
    labels = {key: label for key, label, _ in README_METRICS}
    notes = []
    for key, better in metrics:
        arms = [arm for arm in summary if summary[arm].get(key, {}).get("n")]
        if len(arms) < 2:
            continue
        means = [summary[arm][key]["mean"] for arm in arms]
        worse = [
            f"{arms[i + 1]} {means[i + 1]:.3f} vs {arms[i]} {means[i]:.3f}"
            for i in range(len(arms) - 1)
            if (means[i + 1] <= means[i] if better == "higher" else means[i + 1] >= means[i])
        ]
        label = labels.get(key, key)
        if worse:
            notes.append(
                f"{label}: not ordered as in the paper (no improvement at "
                + "; ".join(worse) + ")."
            )
        else:
            notes.append(f"{label}: improves at every arm, as in the paper.")
    return notes


def ablation_markdown(raw, digits=3):
    """The ablation section of the README from `run_ablation`'s output
    (`ablation.json`): the mean ± std table, the arms skipped and why, and
    whether the dense metrics order as in the paper."""
    summary = summarize(raw)
    lines = []
    schedule = raw.get("schedule")
    if schedule:
        lines += [
            f"Each run: the `{raw.get('recipe', 'base')}` recipe with the arm's "
            f"objective, {schedule['total_steps']:,} steps of batch "
            f"{schedule['batch_size']} at {schedule['image_size']} px.",
            "",
        ]
    lines.append(summary_table(summary, digits=digits))
    notes = order_notes(summary)
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    skipped = raw.get("skipped") or {}
    if skipped:
        lines += [""] + [f"- Arm {arm} not run: {why}." for arm, why in skipped.items()]
    return "\n".join(lines)


def check_readme_section(path, begin=README_BEGIN, end=README_END):
    """The text of a Markdown file that holds the two marker lines, in order.

    Raises:
        ValueError: the file cannot be read, or the markers are missing or
            out of order.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise ValueError(f"Cannot read {path}: {error}") from error
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(
            f"{path} has no '{begin}' ... '{end}' section; add the two marker "
            "lines where the table belongs."
        )
    return text


def write_readme_section(path, markdown, begin=README_BEGIN, end=README_END):
    """Replaces the text between the two marker lines of a Markdown file.

    Raises:
        ValueError: when the file cannot be read or the markers are missing
            or out of order (the file is left as it was).
    """
    text = check_readme_section(path, begin, end)
    start, stop = text.find(begin), text.find(end)
    updated = text[: start + len(begin)] + "\n" + markdown.strip() + "\n" + text[stop:]
    write_atomically(path, updated)
