"""Throughput of the pretraining input pipeline of the `tiny_shapes` recipe.

Measures batches per second with 0, 1 and 2 worker processes of the
pipeline that `recipes/tiny_shapes.py` trains on (its generated scenes,
crops, masks, augmentations and tokenizer, built by the training loop's own
`build_tokenizer` / `build_pipeline`) and prints a Markdown table:

```
python benchmarks/data_pipeline.py --num-batches 100 --output pipeline.md
python benchmarks/data_pipeline.py --set data.pipeline.batch_size=64
```

Worker start-up (process spawn and imports) is reported separately and left
out of the rate, which is measured after a few warm-up batches.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402


def measure_pipeline_rate(recipe, num_batches, tokenizer=None, warmup_batches=3):
    """Batches per second of a recipe's input pipeline, after warm-up.

    Args:
        recipe: a loaded `PretrainRecipe` (e.g. `common.tiny_shapes_recipe`).
        num_batches: int. Batches timed.
        tokenizer: the recipe's tokenizer; built when None (outside the
            timing).
        warmup_batches: int. Batches read before timing (worker start-up,
            first-touch costs).

    Returns:
        float, batches per second.

    Example:
    ```python
    rate = measure_pipeline_rate(common.tiny_shapes_recipe(), num_batches=50)
    ```
    """
    rate, _ = _measure(recipe, num_batches, tokenizer, warmup_batches)
    return rate


def _measure(recipe, num_batches, tokenizer, warmup_batches):
    from keras_tips.training import loop

    if tokenizer is None:
        tokenizer = loop.build_tokenizer(recipe)
    start = time.perf_counter()
    with loop.build_pipeline(recipe, tokenizer) as pipeline:
        next(pipeline)
        startup_seconds = time.perf_counter() - start
        for _ in range(warmup_batches):
            next(pipeline)
        start = time.perf_counter()
        for _ in range(num_batches):
            next(pipeline)
        elapsed = time.perf_counter() - start
    return num_batches / elapsed, startup_seconds


def describe(recipe):
    """One sentence of what the pipeline of `recipe` makes."""
    config = recipe.data.pipeline
    mask = config.mask
    return (
        f"`{recipe.name}` input pipeline: {recipe.data.num_examples:,} "
        f"generated scenes of {recipe.data.image_size} px, batch "
        f"{config.batch_size}, global {config.global_image_size} px, "
        f"{config.local_crop_count} local crops of {config.local_image_size} "
        f"px, {mask.mode} mask of {100 * mask.ratio:.0f} % of the "
        f"{config.num_patches} patches on {100 * mask.probability:.0f} % of "
        f"the images, {recipe.data.sequence_length}-token captions"
    )


def markdown_table(rows, recipe):
    batch_size = recipe.data.pipeline.batch_size
    lines = [
        f"{describe(recipe)}; {os.cpu_count()} CPU cores.",
        "",
        "| workers | batches/s | examples/s | first batch (s) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for workers, rate, startup in rows:
        lines.append(
            f"| {workers} | {rate:.1f} | {rate * batch_size:.0f} "
            f"| {startup:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    from keras_tips.training import loop

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-batches", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[],
        metavar="KEY=VALUE", help="tiny_shapes recipe override (repeatable)",
    )
    parser.add_argument("--output", help="Also write the table to this file.")
    args = parser.parse_args(argv)
    recipe = common.tiny_shapes_recipe(args.overrides)
    tokenizer = loop.build_tokenizer(recipe)
    rows = []
    for workers in args.workers:
        rate, startup = _measure(
            common.tiny_shapes_recipe(
                args.overrides + [f"data.pipeline.worker_count={workers}"]
            ),
            args.num_batches,
            tokenizer,
            warmup_batches=3,
        )
        rows.append((workers, rate, startup))
    table = markdown_table(rows, recipe)
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
