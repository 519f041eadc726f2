"""Train-step throughput, model-FLOPs utilisation and memory of the TIPS
pretrainer, per backend, and the input pipeline's rate at the same batch.

What is measured: `TIPSPretrainer.train_on_batch` (student image and text
towers, EMA teacher image tower, DINO and iBOT heads and every loss, AdamW
update) of the `tiny_shapes` recipe, built from `recipes/tiny_shapes.py` by
the training loop's `build_pretrainer` (model, objective and optimizer), on
batches of that recipe's shapes: its batch size, global and local crops,
patch masks drawn with its `PatchMaskConfig`, and captions of its sequence
length over its vocabulary. One "image" below is one such example. Batches
are random arrays of those shapes, converted to backend tensors before
timing.

Each (backend, variant) runs in its own process, so peak memory readings
do not mix. The variants:

* dtype: float32, or `dtype="mixed_bfloat16"` on the backbone (bf16
  compute, float32 variables; the heads follow the backbone's policy).
* rematerialisation: off, or `keras.RematScope(mode="list_of_layers")`
  naming every transformer block of both towers, so each block's
  activations are recomputed in the backward pass (`jax.checkpoint`,
  `tf.recompute_grad`, `torch.utils.checkpoint`).

Reported per variant:

* images/s: median over rounds of a few timed steps, after warm-up steps
  (compilation; the first steps are excluded).
* MFU: model FLOPs per second over the backend's own measured float32
  matmul peak (a 2048^3 matmul compiled the same way: `jax.jit`,
  `tf.function`, eager PyTorch; best of several runs). Model FLOPs are
  counted analytically from the configuration (`train_step_flops`: matmuls
  and attention products, forward x 3 for the trained path, x 1 for the
  teacher, the usual convention); on JAX the FLOPs XLA itself counts in the
  compiled forward+backward (`cost_analysis()` of a `jax.jit` of the loss
  gradient, without the optimizer update) are shown next to them.
* memory per image, three readings over the batch size:
  - step transient: how far the resident set size (sampled every 2 ms in a
    background thread) rises above its between-steps level during two
    steps after the timed ones. Memory a backend keeps cached between steps
    is not counted, so this can understate;
  - peak growth: the process's peak RSS at the end over its RSS just before
    the first step. It includes compilation and optimizer state, so it is an
    upper bound;
  - on JAX, XLA's own plan: the temporary buffers of the compiled
    forward+backward (`memory_analysis().temp_size_in_bytes`).

The pipeline rate is `benchmarks.data_pipeline.measure_pipeline_rate` at the
same configuration (0 and 1 worker processes), measured on its own; in real
training it shares the CPU with the train step.

Run: `python benchmarks/train_step.py [--quick] [--output table.md]`.

On an accelerator, `python benchmarks/train_step.py --accelerator` (or
`benchmarks/gpu_train_step.sh`) runs the paper recipe's train step
(`recipes/tips_b14_webli.py`: B/14, mixed bfloat16, its objective and
optimizer) on JAX's first device, with rematerialisation off and on, at
several per-device batches (`--batches`), each in its own process, and
reports images/s, the device's peak memory (`memory_stats()`) and MFU:
the analytic model FLOPs per second over the device's dense bf16 peak
(`PEAK_BF16_TFLOPS`, by device name, or `--peak-tflops`). `--recipe`,
`--set` and `--batches` make it run anywhere (the tests run it on the CPU
at tiny sizes).
"""

import argparse
import contextlib
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

VARIANTS = (
    ("float32", False),
    ("float32", True),
    ("mixed_bfloat16", False),
    ("mixed_bfloat16", True),
)


def tiny_recipe(dtype=None):
    """The tiny_shapes recipe with the backbone's dtype policy."""
    return common.tiny_shapes_recipe([f"model.dtype={dtype!r}"])


@dataclasses.dataclass(frozen=True)
class BatchShape:
    """The shapes of one training batch of a recipe (see `batch_shape`)."""

    batch_size: int
    global_size: int
    local_count: int
    local_size: int
    patch_size: int
    mask: object  # PatchMaskConfig
    sequence_length: int
    vocabulary_size: int
    contrastive_crop: bool = False

    @property
    def num_patches(self):
        return (self.global_size // self.patch_size) ** 2


def batch_shape(recipe, vocabulary_size=None):
    """The batch of `recipe` (its pipeline settings); the vocabulary size is
    that of its tokenizer unless given."""
    from keras_tips.training.loop import build_tokenizer

    if vocabulary_size is None:
        vocabulary_size = build_tokenizer(recipe).vocabulary_size()
    config = recipe.data.pipeline
    return BatchShape(
        batch_size=config.batch_size,
        global_size=config.global_image_size,
        local_count=config.local_crop_count,
        local_size=config.local_image_size,
        patch_size=config.patch_size,
        mask=config.mask,
        sequence_length=recipe.data.sequence_length,
        vocabulary_size=vocabulary_size,
        contrastive_crop=config.augmentation.contrastive_crop is not None,
    )


# --- Analytic FLOPs -----------------------------------------------------------


def _tower_flops(tokens, width, layers, intermediate, patches=0, patch_in=0):
    """Forward FLOPs (2 per multiply-add) of one sequence through a tower:
    qkv, projection and MLP matmuls, the two attention products, and the
    patch embedding."""
    linear = 2 * tokens * (4 * width * width + 2 * width * intermediate)
    attention = 4 * tokens * tokens * width
    return layers * (linear + attention) + 2 * patches * patch_in * width


def _head_flops(vectors, width, hidden, bottleneck, prototypes, num_layers):
    dims = [width] + [hidden] * (num_layers - 1) + [bottleneck]
    mlp = sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))
    return vectors * (mlp + 2 * bottleneck * prototypes)


def train_step_flops(recipe, shape):
    """Model FLOPs of one train step on one example (analytic), for the
    model and objective of `recipe` at its batch `shape`.

    Trained path (student image tower on the masked global crop, again on
    the unmasked global crop or the separate contrastive crop, of the same
    size, for the contrastive terms (the pretrainer's default
    `contrastive_view="unmasked"`) and on the local crops, text
    tower on both captions, DINO head on the local CLS tokens, iBOT head on
    the loss tokens (`objective.max_masked_patches` per image, or all
    patches under `mask_loss_tokens="all"`), contrastive logits) counts 3x
    its forward (forward + backward); the teacher (image tower on the global
    crop, unless a head-only teacher shares the contrastive pass; both
    heads) 1x. Elementwise work, norms and the optimizer are left out.

    Returns:
        dict with "student", "teacher" (forward FLOPs) and "total".
    """
    vision, objective = recipe.model.vision, recipe.objective
    width = vision["hidden_dim"]
    global_patches = shape.num_patches
    local_patches = (shape.local_size // shape.patch_size) ** 2
    patch_in = shape.patch_size * shape.patch_size * 3

    def image(patches):
        return _tower_flops(
            patches + 2,
            width,
            vision["num_layers"],
            vision["intermediate_dim"],
            patches,
            patch_in,
        )

    def head(vectors):
        return _head_flops(
            vectors,
            width,
            objective.head_hidden_dim,
            objective.head_bottleneck_dim,
            objective.num_prototypes,
            objective.head_num_layers,
        )

    text = 2 * _tower_flops(
        shape.sequence_length,
        recipe.model.text["hidden_dim"],
        recipe.model.text["num_layers"],
        recipe.model.text["intermediate_dim"],
    )
    contrastive = 2 * 2 * shape.batch_size * width  # per example, 2 losses
    loss_tokens = (
        global_patches
        if objective.mask_loss_tokens == "all" or not objective.max_masked_patches
        else objective.max_masked_patches
    )
    shared_pass = objective.teacher == "heads_only" and objective.teacher_pass == "shared"
    student = (
        2 * image(global_patches)  # masked (iBOT) and unmasked (contrastive)
        + shape.local_count * image(local_patches)
        + text
        + head(shape.local_count)  # DINO on local CLS
        + head(loss_tokens)  # iBOT on the loss tokens
        + contrastive
    )
    teacher = (
        (0 if shared_pass else image(global_patches)) + head(1) + head(loss_tokens)
    )
    return {"student": student, "teacher": teacher, "total": 3 * student + teacher}


# --- Worker -------------------------------------------------------------------


def random_batch(shape, seed=0):
    """Random images and token ids of `shape`; the patch masks are drawn
    like the pipeline's (`PatchMasker` with the recipe's mask settings)."""
    import numpy as np

    from keras_tips.data.masking import PatchMasker

    rng = np.random.default_rng(seed)
    b = shape.batch_size
    length = shape.sequence_length
    masker = PatchMasker(shape.global_size // shape.patch_size, shape.mask)
    padding = np.arange(length)[None] < rng.integers(4, length + 1, (b, 1))
    batch = {
        "global_images": rng.random(
            (b, shape.global_size, shape.global_size, 3), dtype="float32"
        ),
        "local_images": rng.random(
            (b, shape.local_count, shape.local_size, shape.local_size, 3),
            dtype="float32",
        ),
        "patch_mask": np.stack([masker(rng) for _ in range(b)]),
        "web_padding_mask": padding,
        "synthetic_padding_mask": padding[::-1].copy(),
        "has_web": np.ones((b,), bool),
        "has_synthetic": np.ones((b,), bool),
    }
    if shape.contrastive_crop:
        batch["contrastive_images"] = rng.random(
            (b, shape.global_size, shape.global_size, 3), dtype="float32"
        )
    for key in ("web", "synthetic"):
        ids = rng.integers(2, shape.vocabulary_size, (b, length)).astype("int32")
        batch[f"{key}_token_ids"] = np.where(batch[f"{key}_padding_mask"], ids, 0)
    return batch


def build_pretrainer(recipe, shape, remat, optimizer=None):
    """The loop's pretrainer of `recipe`, optionally with every transformer
    block of both towers rematerialised (`optimizer`: see
    `loop.build_pretrainer`)."""
    import keras

    from keras_tips.training.loop import build_pretrainer as build_from_recipe

    keras.utils.set_random_seed(0)
    names = [f"blocks_{i}" for i in range(recipe.model.vision["num_layers"])]
    names += [f"resblocks_{i}" for i in range(recipe.model.text["num_layers"])]
    scope = (
        keras.RematScope(mode="list_of_layers", layer_names=names)
        if remat
        else contextlib.nullcontext()
    )
    with scope:
        return build_from_recipe(recipe, shape.vocabulary_size, optimizer=optimizer)


def matmul_peak_flops(size=2048, repeats=5, dtype="float32"):
    """Best FLOP/s of a (size x size) @ (size x size) matmul on this backend,
    compiled the way the backend runs models (jit / tf.function / eager)."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    a = keras.ops.convert_to_tensor(rng.random((size, size), dtype="float32"))
    b = keras.ops.convert_to_tensor(rng.random((size, size), dtype="float32"))
    a, b = keras.ops.cast(a, dtype), keras.ops.cast(b, dtype)
    if backend == "jax":
        import jax

        function = jax.jit(lambda x, y: x @ y)
    elif backend == "tensorflow":
        import tensorflow as tf

        function = tf.function(lambda x, y: tf.matmul(x, y))
    else:
        import torch

        def function(x, y):
            with torch.inference_mode():
                return x @ y

    common.synchronize(function(a, b))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        common.synchronize(function(a, b))
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def jax_compiled_analysis(pretrainer, batch):
    """XLA's FLOP count and temporary memory of the jitted loss gradient
    (forward + backward of the whole objective, no optimizer update)."""
    import jax

    trainable = [v.value for v in pretrainer.trainable_variables]
    non_trainable = [v.value for v in pretrainer.non_trainable_variables]

    def loss(trainable, non_trainable, batch):
        outputs, _ = pretrainer.stateless_call(
            trainable, non_trainable, batch, training=True
        )
        return outputs["loss"]

    compiled = (
        jax.jit(jax.grad(loss)).lower(trainable, non_trainable, batch).compile()
    )
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    memory = compiled.memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", None) if memory else None
    return flops, temp


def worker(dtype, remat, warmup, rounds, steps_per_round, measure_peak):
    import keras
    import numpy as np

    backend = keras.backend.backend()
    recipe = tiny_recipe(dtype)
    shape = batch_shape(recipe)
    result = {"backend": backend, "dtype": dtype, "remat": remat}
    if measure_peak:
        result["matmul_peak_flops"] = matmul_peak_flops()
    common.log(f"train step {backend} {dtype} remat={remat}: building")
    pretrainer = build_pretrainer(recipe, shape, remat)
    batch = {
        k: keras.ops.convert_to_tensor(v)
        for k, v in random_batch(shape).items()
    }
    rss_before = common.current_rss_bytes()
    start = time.perf_counter()
    for _ in range(warmup):
        logs = pretrainer.train_on_batch(batch, return_dict=True)
    result["warmup_seconds"] = time.perf_counter() - start
    result["warmup_steps"] = warmup
    if not np.isfinite(float(logs["loss"])):
        raise FloatingPointError(f"non-finite loss {logs['loss']}")
    common.log(f"train step {backend} {dtype} remat={remat}: timing")
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps_per_round):
            logs = pretrainer.train_on_batch(batch, return_dict=True)
        elapsed = time.perf_counter() - start
        rates.append(shape.batch_size * steps_per_round / elapsed)
    result["rates"] = rates
    result["loss"] = float(logs["loss"])
    # Transient memory of a step: the RSS peak during two more steps over
    # the RSS between steps (compiled program, weights, optimizer state and
    # allocator caches already in place).
    with common.RssSampler() as sampler:
        for _ in range(2):
            pretrainer.train_on_batch(batch, return_dict=True)
    result["step_rss_transient_bytes"] = sampler.peak - sampler.start
    result["peak_rss_growth_bytes"] = common.peak_rss_bytes() - rss_before
    result["batch_size"] = shape.batch_size
    result["shape"] = dict(
        dataclasses.asdict(shape), num_patches=shape.num_patches
    )
    result["flops_per_image"] = train_step_flops(recipe, shape)
    if backend == "jax":
        try:
            flops, temp = jax_compiled_analysis(pretrainer, batch)
            result["xla_flops_per_image"] = flops / shape.batch_size
            if temp is not None:
                result["xla_temp_bytes_per_image"] = temp / shape.batch_size
        except Exception as error:  # Report, do not lose the timings.
            result["xla_analysis_error"] = f"{type(error).__name__}: {error}"
    return result


def pipeline_rates(workers=(0, 1), num_batches=30):
    """Examples/s of the recipe's input pipeline (0 and 1 worker process)."""
    from benchmarks.data_pipeline import measure_pipeline_rate
    from keras_tips.training.loop import build_tokenizer

    tokenizer = build_tokenizer(tiny_recipe())
    rates = {}
    for count in workers:
        recipe = common.tiny_shapes_recipe([f"data.pipeline.worker_count={count}"])
        common.log(f"pipeline: {count} worker(s)")
        rates[count] = (
            measure_pipeline_rate(recipe, num_batches, tokenizer)
            * recipe.data.pipeline.batch_size
        )
    return rates


# --- On an accelerator ----------------------------------------------------------

# Dense bfloat16 peak of each device (vendor data sheets, no sparsity), by a
# part of the name JAX reports (`device.device_kind`); first match wins.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)
ACCELERATOR_RECIPE = os.path.join(common.REPOSITORY_ROOT, "recipes", "tips_b14_webli.py")
ACCELERATOR_BATCHES = (64, 128, 192, 256)


def device_peak_flops(device_kind, peak_tflops=None):
    """`(FLOP/s, where it comes from)` of the device's dense bf16 peak:
    `peak_tflops` when given, else `PEAK_BF16_TFLOPS` by name; None when
    the device is not listed."""
    if peak_tflops is not None:
        return peak_tflops * 1e12, f"{peak_tflops:g} TFLOP/s (given)"
    for name, tflops in PEAK_BF16_TFLOPS:
        if name.lower() in device_kind.lower():
            return tflops * 1e12, f"{tflops:g} TFLOP/s ({name} bf16 dense)"
    return None, "unknown (pass --peak-tflops)"


def accelerator_worker(recipe_path, overrides, per_device_batch, remat, warmup, rounds, steps):
    """The recipe's train step on this process's first JAX device (one
    device, no distribution) at `per_device_batch`: images/s and the
    device's peak memory."""
    import jax
    import keras
    import numpy as np

    device = jax.devices()[0]
    recipe, vocabulary_size = common.recipe_for_random_batches(
        recipe_path,
        list(overrides)
        + ["train.distribution='none'", f"data.pipeline.batch_size={per_device_batch}"],
    )
    shape = batch_shape(recipe, vocabulary_size)
    result = {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "recipe": recipe.name,
        "dtype": recipe.model.dtype,
        "remat": remat,
        "per_device_batch": per_device_batch,
        "flops_per_image": train_step_flops(recipe, shape),
    }
    common.log(f"{device.device_kind}: batch {per_device_batch}, remat={remat}: building")
    pretrainer = build_pretrainer(recipe, shape, remat)
    batch = {k: keras.ops.convert_to_tensor(v) for k, v in random_batch(shape).items()}
    start = time.perf_counter()
    for _ in range(warmup):
        logs = pretrainer.train_on_batch(batch, return_dict=True)
    result["warmup_seconds"] = time.perf_counter() - start
    if not np.isfinite(float(logs["loss"])):
        raise FloatingPointError(f"non-finite loss {logs['loss']}")
    common.log(f"{device.device_kind}: batch {per_device_batch}, remat={remat}: timing")
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            # train_on_batch returns the logs as NumPy: each step ends on
            # the host, so no step is left running outside the timing.
            logs = pretrainer.train_on_batch(batch, return_dict=True)
        rates.append(per_device_batch * steps / (time.perf_counter() - start))
    result["rates"] = rates
    result["loss"] = float(logs["loss"])
    stats = device.memory_stats() or {}
    result["peak_bytes_in_use"] = stats.get("peak_bytes_in_use")
    result["bytes_limit"] = stats.get("bytes_limit")
    return result


def run_accelerator(
    recipe=ACCELERATOR_RECIPE, batches=ACCELERATOR_BATCHES, remat_variants=(False, True),
    overrides=(), quick=False, peak_tflops=None, timeout=None,
):
    """One JAX process per (remat, per-device batch), so that running out of
    device memory at one batch does not affect the next; returns
    `(results, Markdown)`."""
    results = []
    for remat in remat_variants:
        for per_device_batch in batches:
            arguments = ["--accelerator-worker", "--recipe", recipe, "--per-device-batch", str(per_device_batch)]
            arguments += [item for value in overrides for item in ("--set", value)]
            if remat:
                arguments.append("--remat")
            if quick:
                arguments.append("--quick")
            common.log(f"accelerator train step: batch {per_device_batch}, remat={remat}")
            result = common.run_worker(os.path.abspath(__file__), "jax", arguments, timeout=timeout)
            result.setdefault("remat", remat)
            result.setdefault("per_device_batch", per_device_batch)
            results.append(result)
    return results, accelerator_report(results, peak_tflops)


def accelerator_report(results, peak_tflops=None):
    """The Markdown table of `run_accelerator`'s results."""
    measured = [r for r in results if "error" not in r]
    kind = measured[0]["device_kind"] if measured else "unknown device"
    peak, peak_source = device_peak_flops(kind, peak_tflops)
    rows = []
    for result in results:
        cells = [
            "on" if result["remat"] else "off",
            str(result["per_device_batch"]),
        ]
        if "error" in result:
            reason = result["error"].strip().splitlines()[-1][:160]
            if "RESOURCE_EXHAUSTED" in result["error"] or "out of memory" in result["error"].lower():
                reason = "out of device memory"
            rows.append(cells + ["n/a"] * 4 + [f"failed: {reason}"])
            continue
        rate = common.median(result["rates"])
        flops = result["flops_per_image"]["total"]
        memory = result.get("peak_bytes_in_use")
        rows.append(
            cells
            + [
                common.fmt_rate(rate),
                common.fmt(1e3 * result["per_device_batch"] / rate, 0),
                common.fmt(100 * rate * flops / peak if peak else None, 1, " %"),
                common.fmt(memory / 1e9 if memory else None, 1),
                f"compile + warm-up {result['warmup_seconds']:.0f} s",
            ]
        )
    first = measured[0] if measured else None
    lines = [
        f"Device: {kind}; peak used for MFU: {peak_source}.",
    ]
    if first:
        lines.append(
            f"Recipe `{first['recipe']}` ({first['dtype']}), one device; analytic "
            f"model FLOPs per image {first['flops_per_image']['total'] / 1e9:.1f} "
            "GFLOP (`train_step_flops`: trained path x 3, teacher x 1)."
        )
    lines += [
        "",
        common.markdown_table(
            ["remat", "per-device batch", "images/s", "ms/step", "MFU", "peak device GB", "notes"],
            rows,
            align="lrrrrrl",
        ),
        "",
    ]
    return "\n".join(lines)


# --- Report -------------------------------------------------------------------


def report(results, pipeline, quick):
    shape = None
    lines = []
    rows = []
    peaks = {}
    for result in results:
        backend = result.get("backend")
        variant = (
            f"{result.get('dtype')}"
            + (", remat" if result.get("remat") else "")
        )
        if "error" in result:
            reason = result["error"].strip().splitlines()[-1][:160]
            rows.append([backend, variant] + ["n/a"] * 7 + [f"failed: {reason}"])
            continue
        if "matmul_peak_flops" in result:
            peaks[backend] = result["matmul_peak_flops"]
        rate = common.median(result["rates"])
        flops = result["flops_per_image"]["total"]
        peak = peaks.get(backend)
        mfu = rate * flops / peak if peak else None
        note = []
        xla_mfu = "n/a"
        if "xla_flops_per_image" in result and peak:
            xla_mfu = common.fmt(
                100 * rate * result["xla_flops_per_image"] / peak, 1, " %"
            )
        xla_temp = "n/a"
        if "xla_temp_bytes_per_image" in result:
            xla_temp = common.fmt(result["xla_temp_bytes_per_image"] / 2**20, 2)
        if "xla_analysis_error" in result:
            note.append("XLA analysis failed")
        note.append(f"compile + {result['warmup_steps']} warm-up steps "
                    f"{result['warmup_seconds']:.0f} s")
        rows.append(
            [
                backend,
                variant,
                common.fmt_rate(rate),
                common.fmt(1e3 * result["batch_size"] / rate, 0),
                common.fmt(100 * mfu if mfu else None, 2, " %"),
                xla_mfu,
                common.fmt(
                    result["step_rss_transient_bytes"]
                    / result["batch_size"]
                    / 2**20,
                    2,
                ),
                common.fmt(
                    result["peak_rss_growth_bytes"] / result["batch_size"] / 2**20,
                    2,
                ),
                xla_temp,
                "; ".join(note),
            ]
        )
        shape = result
    if shape is not None:
        flops = shape["flops_per_image"]
        batch = shape["shape"]
        mask = batch["mask"]
        lines += [
            f"Train step of the `tiny_shapes` recipe, batch {shape['batch_size']} "
            f"(one image = one example: a {batch['global_size']} px global "
            f"crop, {batch['local_count']} local crops of "
            f"{batch['local_size']} px, a {mask['mode']} iBOT mask of "
            f"{100 * mask['ratio']:.0f} % of the {batch['num_patches']} "
            f"patches on {100 * mask['probability']:.0f} % of the images, two "
            f"{batch['sequence_length']}-token captions). Analytic model "
            f"FLOPs per image: {flops['total'] / 1e9:.3f} GFLOP "
            f"(student forward {flops['student'] / 1e6:.1f} MFLOP x 3, "
            f"teacher forward {flops['teacher'] / 1e6:.1f} MFLOP).",
            "",
        ]
    peak_text = ", ".join(
        f"{b} {p / 1e9:.0f} GFLOP/s" for b, p in sorted(peaks.items())
    )
    lines += [
        f"Measured float32 matmul peak (2048³): {peak_text or 'n/a'}.",
        "",
        common.markdown_table(
            [
                "backend",
                "variant",
                "images/s",
                "ms/step",
                "MFU (analytic)",
                "MFU (XLA count)",
                "step transient MiB/img",
                "peak growth MiB/img",
                "XLA temp MiB/img",
                "notes",
            ],
            rows,
            align="llrrrrrrrl",
        ),
        "",
    ]
    if pipeline:
        fp32 = {
            r["backend"]: common.median(r["rates"])
            for r in results
            if "error" not in r and r["dtype"] == "float32" and not r["remat"]
        }
        pipe_rows = []
        for workers, rate in sorted(pipeline.items()):
            ratios = ", ".join(
                f"{b} {rate / s:.1f}×" for b, s in sorted(fp32.items())
            )
            pipe_rows.append([workers, common.fmt_rate(rate), ratios or "n/a"])
        lines += [
            "Input pipeline at the same batch (examples/s, measured alone) "
            "against the float32 train step:",
            "",
            common.markdown_table(
                ["pipeline workers", "examples/s", "pipeline / train step"],
                pipe_rows,
                align="rrl",
            ),
            "",
        ]
    return "\n".join(lines)


def run(quick=False, backends=common.BACKENDS, variants=VARIANTS, timeout=None):
    """One process per (backend, variant); returns (results, Markdown)."""
    results = []
    for backend in backends:
        for index, (dtype, remat) in enumerate(variants):
            common.log(f"train step: {backend} {dtype} remat={remat}")
            arguments = ["--dtype", dtype]
            if remat:
                arguments.append("--remat")
            if quick:
                arguments.append("--quick")
            if index == 0:
                arguments.append("--measure-peak")
            result = common.run_worker(
                os.path.abspath(__file__), backend, arguments, timeout=timeout
            )
            result.update({"backend": backend, "dtype": dtype, "remat": remat})
            results.append(result)
    common.log("pipeline rate")
    pipeline = pipeline_rates(num_batches=15 if quick else 50)
    return results, pipeline, report(results, pipeline, quick)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer steps.")
    parser.add_argument("--backends", nargs="+", default=list(common.BACKENDS))
    parser.add_argument("--output", help="Also write the Markdown to this file.")
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--remat", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--measure-peak", action="store_true", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--accelerator", action="store_true",
        help="The paper recipe's train step on this machine's accelerator "
        "(JAX; bf16 as the recipe sets; remat off and on; --batches).",
    )
    parser.add_argument("--recipe", default=ACCELERATOR_RECIPE, help="With --accelerator.")
    parser.add_argument(
        "--batches", nargs="+", type=int, default=list(ACCELERATOR_BATCHES),
        help="With --accelerator: per-device batches.",
    )
    parser.add_argument(
        "--remat-variants", nargs="+", choices=["off", "on"], default=["off", "on"],
        help="With --accelerator.",
    )
    parser.add_argument(
        "--peak-tflops", type=float,
        help="With --accelerator: the device's dense bf16 peak, if not listed.",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="With --accelerator: recipe override (repeatable).",
    )
    parser.add_argument("--timeout", type=float, help="Seconds a worker.")
    parser.add_argument("--accelerator-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--per-device-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_output and args.accelerator_worker:
        warmup, rounds, steps = (2, 2, 2) if args.quick else (3, 5, 5)
        common.write_worker_output(
            args.worker_output,
            accelerator_worker(
                args.recipe, args.set, args.per_device_batch, args.remat,
                warmup, rounds, steps,
            ),
        )
        return 0
    if args.accelerator:
        _, markdown = run_accelerator(
            args.recipe, args.batches, [v == "on" for v in args.remat_variants],
            args.set, args.quick, args.peak_tflops, args.timeout,
        )
        common.report_markdown(markdown, args.output)
        return 0
    if args.worker_output:
        warmup, rounds, steps = (2, 3, 2) if args.quick else (3, 5, 4)
        common.write_worker_output(
            args.worker_output,
            worker(args.dtype, args.remat, warmup, rounds, steps, args.measure_peak),
        )
        return 0
    _, _, markdown = run(args.quick, args.backends)
    common.report_markdown(markdown, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
