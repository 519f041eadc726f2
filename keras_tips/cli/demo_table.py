"""Writes the README's demo section from a demo run's `results.json`.

The numbers come from the run's `results.json` alone (what `keras-tips demo`
wrote): each headline metric beside its baselines and the goal the demo is
held to, and the training and evaluation times. The text replaces what lies
between the README's two demo markers.

Usage:

    python -m keras_tips.cli.demo_table runs/demo/results.json README.md

(`keras-tips demo --readme README.md` does the same at the end of a run.)
"""

import argparse
import json

from keras_tips.evaluation.shapes_benchmark import chance_key
from keras_tips.training.ablation import check_readme_section
from keras_tips.training.ablation import write_readme_section

README_BEGIN = "<!-- demo table: begin (written by keras-tips demo --readme) -->"
README_END = "<!-- demo table: end -->"
# The README's rows: (metric key, label, goal or None, "higher" or "lower").
# The goals are what the demo must reach in at most 10 minutes on a 2-core
# CPU (JAX).
DEMO_METRICS = (
    ("zero_shot/cls_1/top1", "zero-shot shape, CLS1 top-1", 0.6, "higher"),
    ("zero_shot/cls_2/top1", "zero-shot shape, CLS2 top-1", None, "higher"),
    ("knn/cls_1/top1", "10-NN shape, CLS1 top-1", None, "higher"),
    ("zero_shot_colour/cls_1/top1", "zero-shot colour, CLS1 top-1", 0.9, "higher"),
    ("segmentation_probe/miou", "shape segmentation, linear probe mIoU", 0.5, "higher"),
    ("zero_shot_segmentation/miou", "shape segmentation, zero-shot mIoU", 0.3, "higher"),
    ("colour_probe/miou", "colour segmentation, linear probe mIoU", None, "higher"),
    ("foreground_probe/miou", "foreground segmentation, linear probe mIoU", None, "higher"),
    ("depth_probe/rmse", "depth, linear probe RMSE", None, "lower"),
    ("retrieval_synthetic/cls_2/image_to_text/recall@1",
     "image → synthetic caption, CLS2 R@1", None, "higher"),
)
def _baseline(results, prefix, metric):
    key = chance_key(metric) if prefix == "chance" else f"{prefix}/{metric}"
    value = results.get(key)
    return "" if value is None else f"{value:.3f}"


def demo_markdown(results):
    """The README section for one demo run's results.

    Args:
        results: the dict of a demo's `results.json`.

    Returns:
        Markdown: a table of the headline metrics with their baselines
        (random-init features, trivial prediction, chance) and goals, and a
        line on the run's times.

    Example:
    ```python
    markdown = demo_markdown(json.load(open("runs/demo/results.json")))
    ```
    """
    missing = [key for key, *_ in DEMO_METRICS if key not in results]
    if missing:
        raise ValueError(
            "The results lack " + ", ".join(missing) + ": pass the "
            "results.json of a finished keras-tips demo run."
        )
    lines = [
        "| metric (300 test scenes) | trained | random init | trivial | chance "
        "| goal | met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, label, goal, better in DEMO_METRICS:
        value = results[key]
        met = ""
        if goal is not None:
            reached = value >= goal if better == "higher" else value <= goal
            met = "yes" if reached else "**no**"
        lines.append(
            f"| {label} | {value:.3f} | "
            + " | ".join(
                _baseline(results, prefix, key)
                for prefix in ("random_init", "trivial", "chance")
            )
            + f" | {'' if goal is None else f'{goal:g}'} | {met} |"
        )
    train = results.get("time/train_seconds")
    evaluation = results.get("time/evaluation_seconds")
    if train is not None and evaluation is not None:
        lines += [
            "",
            f"Training took {train:.0f} s and the evaluation {evaluation:.0f} s.",
        ]
    return "\n".join(lines)


def check_readme(readme):
    """Raises a ValueError unless `readme` holds the two demo markers."""
    check_readme_section(readme, README_BEGIN, README_END)


def write_demo_section(results, readme):
    """Replaces the README's demo section with `demo_markdown(results)`."""
    markdown = demo_markdown(results)
    write_readme_section(readme, markdown, README_BEGIN, README_END)
    return markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="results.json written by keras-tips demo")
    parser.add_argument("readme", help="Markdown file with the demo markers")
    args = parser.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        results = json.load(f)
    try:
        markdown = write_demo_section(results, args.readme)
    except ValueError as error:
        raise SystemExit(str(error)) from error
    print(markdown)
    print(f"Wrote the demo section of {args.readme}.")


if __name__ == "__main__":
    main()
