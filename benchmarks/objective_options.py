"""What the TIPSv2 objective options cost: memory, FLOPs and step time.

Compares, on one recipe and per-device batch, the TIPS objective (a full EMA
teacher, iBOT on the masked tokens, gathered to the static bound) with
TIPSv2's options, one at a time and together:

    python benchmarks/objective_options.py [--recipe recipes/tiny_shapes.py] \
        [--per-device-batch 16] [--rounds 3] [--steps 3] [--output RESULTS.md]

For every arm the JAX train step is compiled ahead of time without weights
(`memory_plan.plan`: XLA's peak bytes and FLOPs of one step, and the number
of values the pretrainer holds), then the arms are built for real and timed
round-robin on random batches of the recipe's shapes (`train_on_batch`,
median images/s over rounds), so that the machine's load hits every arm
alike. Ratios are against the TIPS arm. With `--output` the table replaces
its section of that Markdown file (between its markers).

JAX only (the memory plan is XLA's); on this project's CPU the timing is of
the tiny recipe, and a paper-scale comparison is a matter of `--recipe` on
an accelerator.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

ARMS = {
    "TIPS: EMA teacher, iBOT on masked tokens": [],
    "+ iBOT++ (patch loss on all tokens)": ["objective.mask_loss_tokens=all"],
    "+ heads-only EMA": ["objective.teacher=heads_only"],
    "TIPSv2: iBOT++ and heads-only EMA": [
        "objective.mask_loss_tokens=all",
        "objective.teacher=heads_only",
    ],
}
SECTION_BEGIN = "<!-- objective options table: begin -->"
SECTION_END = "<!-- objective options table: end -->"


def measure(recipe_path, per_device_batch, rounds, steps, arms=ARMS, progress=common.log):
    """Plans and times every arm; returns a dict arm -> results."""
    import keras
    import numpy as np

    from benchmarks import memory_plan
    from benchmarks import train_step

    if keras.backend.backend() != "jax":
        raise ValueError("Set KERAS_BACKEND=jax: the memory plan is XLA's.")
    results = {}
    steps_to_time = {}
    for name, overrides in arms.items():
        progress(f"{name}: memory plan")
        planned = memory_plan.plan(
            recipe_path, per_device_batch, overrides=overrides, progress=progress
        )
        values = planned["parameters"]
        results[name] = {
            "overrides": list(overrides),
            "peak_bytes": planned["peak_bytes"],
            "flops_per_step": planned["flops_per_step"],
            "values_held": values["trainable"] + values["non_trainable"],
        }
        recipe, vocabulary_size = common.recipe_for_random_batches(
            recipe_path,
            list(overrides) + [f"data.pipeline.batch_size={per_device_batch}"],
        )
        shape = train_step.batch_shape(recipe, vocabulary_size)
        pretrainer = train_step.build_pretrainer(recipe, shape, remat=False)
        batch = {
            key: keras.ops.convert_to_tensor(value)
            for key, value in train_step.random_batch(shape).items()
        }
        progress(f"{name}: compiling the step")
        start = time.perf_counter()
        logs = pretrainer.train_on_batch(batch, return_dict=True)
        results[name]["first_step_seconds"] = time.perf_counter() - start
        if not np.isfinite(float(logs["loss"])):
            raise FloatingPointError(f"{name}: non-finite loss {logs['loss']}")
        steps_to_time[name] = (
            lambda p=pretrainer, b=batch: p.train_on_batch(b, return_dict=True)
        )
    progress(f"timing {len(arms)} arms, {rounds} rounds of {steps} steps")
    rates = common.interleaved_rates(steps_to_time, per_device_batch, rounds, steps)
    for name, arm_rates in rates.items():
        results[name]["rates"] = arm_rates
        results[name]["images_per_second"] = common.median(arm_rates)
    return results


def report(results, recipe_path, per_device_batch):
    """The Markdown section (with its markers)."""
    base = results[next(iter(results))]
    rows = []
    for name, arm in results.items():
        rows.append([
            name,
            common.fmt(arm["peak_bytes"] / 2**20, 1),
            common.fmt(arm["peak_bytes"] / base["peak_bytes"], 2, "x"),
            common.fmt(arm["flops_per_step"] / 1e9, 2),
            common.fmt(arm["values_held"] / 1e6, 2),
            common.fmt(arm["images_per_second"], 1),
            common.fmt(arm["images_per_second"] / base["images_per_second"], 2, "x"),
        ])
    table = common.markdown_table(
        ["arm", "peak MiB (XLA)", "vs TIPS", "GFLOP/step (XLA)",
         "values held (M)", "images/s", "vs TIPS"],
        rows,
    )
    machine = common.machine_info()
    return common.titled_section(
        SECTION_BEGIN,
        SECTION_END,
        "TIPSv2 objective options",
        (
            f"`python benchmarks/objective_options.py --recipe "
            f"{os.path.relpath(recipe_path, common.REPOSITORY_ROOT)} "
            f"--per-device-batch {per_device_batch}` at revision "
            f"{common.git_revision()}, JAX, {machine['cpu']} ({machine['logical_cores']} cores). "
            "Peak memory and FLOPs: XLA's plan of one compiled train step; values "
            "held: weights of the student, teacher and heads (no optimizer "
            "moments); images/s: median over interleaved rounds."
        ),
        table,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=common.TINY_SHAPES_RECIPE)
    parser.add_argument("--per-device-batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="Steps a round.")
    parser.add_argument("--output", help="Markdown file whose section to replace.")
    args = parser.parse_args(argv)
    results = measure(args.recipe, args.per_device_batch, args.rounds, args.steps)
    markdown = report(results, args.recipe, args.per_device_batch)
    common.report_section(markdown, args.output, SECTION_BEGIN, SECTION_END)


if __name__ == "__main__":
    main()
