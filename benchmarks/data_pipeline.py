"""Throughput of the pretraining input pipeline on the shapes dataset.

Measures batches per second with 0, 1 and 2 worker processes at the tiny
recipe's input sizes and prints a Markdown table:

```
python benchmarks/data_pipeline.py --num-batches 100 --output pipeline.md
```

Worker start-up (process spawn and imports) is reported separately and left
out of the rate, which is measured after a few warm-up batches.
"""

import argparse
import dataclasses
import os
import sys
import time

from keras_tips.data import PipelineConfig
from keras_tips.data import PretrainingPipeline
from keras_tips.data import SentencePieceTextTokenizer
from keras_tips.data import ShapesDataset

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_PATH = os.path.join(
    REPOSITORY_ROOT, "tests", "testdata", "tips_tiny", "tokenizer.model"
)
# Input sizes of a tiny TIPS trained on shapes on a CPU: 56 px global crops
# (4x4 patches of 14), two 28 px local crops, iBOT masking at 0.75.
TINY_RECIPE_CONFIG = PipelineConfig(
    batch_size=32,
    global_image_size=56,
    local_crop_count=2,
    local_image_size=28,
    mask_ratio=0.75,
    seed=0,
)
SHAPES_IMAGE_SIZE = 64
SEQUENCE_LENGTH = 16


def measure_pipeline_rate(
    config, num_batches, source=None, text_tokenizer=None, warmup_batches=3
):
    """Batches per second of the pipeline, after warm-up.

    Args:
        config: `PipelineConfig`.
        num_batches: int. Batches timed.
        source: image-text source; defaults to a shapes training split.
        text_tokenizer: tokenizer callable; defaults to the tiny reference
            SentencePiece model.
        warmup_batches: int. Batches read before timing (worker start-up,
            first-touch costs).

    Returns:
        float, batches per second.

    Example:
    ```python
    rate = measure_pipeline_rate(TINY_RECIPE_CONFIG, num_batches=50)
    ```
    """
    rate, _ = _measure(
        config, num_batches, source, text_tokenizer, warmup_batches
    )
    return rate


def _measure(config, num_batches, source, text_tokenizer, warmup_batches):
    if source is None:
        source = ShapesDataset(
            "train", num_examples=50_000, image_size=SHAPES_IMAGE_SIZE
        ).image_text_source()
    if text_tokenizer is None:
        text_tokenizer = SentencePieceTextTokenizer(
            TOKENIZER_PATH, SEQUENCE_LENGTH
        )
    start = time.perf_counter()
    with PretrainingPipeline(source, config, text_tokenizer) as pipeline:
        next(pipeline)
        startup_seconds = time.perf_counter() - start
        for _ in range(warmup_batches):
            next(pipeline)
        start = time.perf_counter()
        for _ in range(num_batches):
            next(pipeline)
        elapsed = time.perf_counter() - start
    return num_batches / elapsed, startup_seconds


def markdown_table(rows, config):
    lines = [
        f"Input pipeline on shapes ({SHAPES_IMAGE_SIZE} px scenes), batch "
        f"{config.batch_size}, global {config.global_image_size} px, "
        f"{config.local_crop_count} local crops of "
        f"{config.local_image_size} px, "
        f"{os.cpu_count()} CPU cores.",
        "",
        "| workers | batches/s | examples/s | first batch (s) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for workers, rate, startup in rows:
        lines.append(
            f"| {workers} | {rate:.1f} | {rate * config.batch_size:.0f} "
            f"| {startup:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-batches", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--batch-size", type=int, default=TINY_RECIPE_CONFIG.batch_size
    )
    parser.add_argument("--output", help="Also write the table to this file.")
    args = parser.parse_args(argv)
    config = dataclasses.replace(TINY_RECIPE_CONFIG, batch_size=args.batch_size)
    rows = []
    for workers in args.workers:
        rate, startup = _measure(
            dataclasses.replace(config, worker_count=workers),
            args.num_batches,
            source=None,
            text_tokenizer=None,
            warmup_batches=3,
        )
        rows.append((workers, rate, startup))
    table = markdown_table(rows, config)
    print(table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
