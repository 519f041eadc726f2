"""Image-encoder inference throughput (images/s), float32 on the CPU.

What is measured: the forward pass of the TIPS image tower
(`TIPSVisionEncoder`: ViT/14 with two CLS tokens, random weights) for S/14
and B/14 at 224 and 448 px, on JAX, TensorFlow and PyTorch, each backend in
its own process (`KERAS_BACKEND` set per subprocess). In every process, on
the same input batch and interleaved round by round:

* `keras_tips`: the encoder compiled by `TIPSModel`'s own helper
  (`keras_tips.backend.compile_inference`: `jax.jit` of a stateless call,
  `tf.function`, or `torch.inference_mode`), the path `encode_images` runs.
* `dinov2`: keras-hub's `DINOV2Backbone` of the same depth, width, heads and
  MLP width, built for the test image size, with one register token so that
  it also runs 2 + N tokens, compiled by the same helper.
* `plain_torch` (PyTorch process only): the same network written directly
  in `torch.nn` (`benchmarks/torch_vit.py`), run under
  `torch.inference_mode()`.
* `keras_tips_keras_ops` (PyTorch process only, S/14 at 224 px, and every
  case with `--full`): `keras_tips` compiled inside
  `keras_tips.backend.fast_kernels(False)`, i.e. with its fused PyTorch
  inference kernels switched off: one Keras op per step, as before they were
  added (the "before" of the PyTorch speed-up).

The images are backend tensors made before timing (no host conversion is
timed); JAX outputs are waited for with `block_until_ready`. After warm-up
calls (compilation), each round times every model once in a rotating order;
the table gives the median rate over rounds and the median of the per-round
ratios. Other processes on a shared machine slow all models of a round
alike, so the ratios are steadier than the rates.

Run: `python benchmarks/image_encoder.py [--quick] [--output table.md]`
(`benchmarks/run_all.py` runs it as part of the full report).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

SIZES = {
    "S/14": dict(hidden_dim=384, num_layers=12, num_heads=6, intermediate_dim=1536),
    "B/14": dict(hidden_dim=768, num_layers=12, num_heads=12, intermediate_dim=3072),
}
PATCH_SIZE = 14
# The learned position grid of the 224 px TIPS towers; 448 px inputs resize it
# to 32 x 32 on every call, as `encode_images` does.
POSITION_GRID_SIZE = 16
HEADLINE = ("S/14", 224)


# (size, image side, batch, rounds, calls per round, warm-up calls)
FULL_CASES = (
    ("S/14", 224, 8, 7, 2, 2),
    ("S/14", 448, 2, 5, 1, 2),
    ("B/14", 224, 8, 5, 1, 1),
    ("B/14", 448, 2, 4, 1, 1),
)
QUICK_CASES = (
    ("S/14", 224, 8, 5, 1, 2),
    ("S/14", 448, 1, 3, 1, 1),
    ("B/14", 224, 2, 3, 1, 1),
    ("B/14", 448, 1, 2, 1, 1),
)


def _build_keras_tips(size, image_side):
    from keras_tips import TIPSVisionEncoder
    from keras_tips.backend import compile_inference

    encoder = TIPSVisionEncoder(
        **SIZES[size], patch_size=PATCH_SIZE, position_grid_size=POSITION_GRID_SIZE
    )
    encoder.build((None, image_side, image_side, 3))
    return encoder, compile_inference(encoder, lambda images: encoder(images))


def _build_dinov2(size, image_side):
    import keras_hub

    from keras_tips.backend import compile_inference

    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=PATCH_SIZE,
        **SIZES[size],
        layer_scale_init_value=1e-5,
        num_register_tokens=1,
        image_shape=(image_side, image_side, 3),
    )
    return backbone, compile_inference(backbone, lambda images: backbone(images))


def _build_plain_torch(size, image_side):
    import torch

    from benchmarks.torch_vit import PlainTorchViT

    model = PlainTorchViT(**SIZES[size], patch_size=PATCH_SIZE, image_size=image_side)
    model.eval()

    def run(images):
        with torch.inference_mode():
            return model(images)

    return model, run


def _count_parameters(model):
    import numpy as np

    if hasattr(model, "weights"):
        return int(sum(np.prod(w.shape) for w in model.weights))
    return int(sum(p.numel() for p in model.parameters()))


def measure_case(size, image_side, batch, rounds, calls, warmup, with_keras_ops):
    """Rates of every model of one case in this process's backend."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    images = keras.ops.convert_to_tensor(
        rng.random((batch, image_side, image_side, 3), dtype="float32")
    )
    keras.utils.set_random_seed(0)
    models = {}
    encoder, tips = _build_keras_tips(size, image_side)
    models["keras_tips"] = (encoder, lambda: tips(images))
    dino_model, dino = _build_dinov2(size, image_side)
    models["dinov2"] = (dino_model, lambda: dino(images))
    if backend == "torch":
        plain_model, plain = _build_plain_torch(size, image_side)
        models["plain_torch"] = (plain_model, lambda: plain(images))
        if with_keras_ops:
            from keras_tips.backend import compile_inference
            from keras_tips.backend import fast_kernels

            # Compiled with the fast kernels off: it keeps that setting.
            with fast_kernels(False):
                keras_ops = compile_inference(encoder, lambda images: encoder(images))
            models["keras_tips_keras_ops"] = (encoder, lambda: keras_ops(images))
    functions = {name: function for name, (_, function) in models.items()}
    for name, function in functions.items():
        common.log(f"{backend} {size} {image_side}px b{batch}: warming up {name}")
        for _ in range(warmup):
            common.synchronize(function())
    common.log(f"{backend} {size} {image_side}px b{batch}: timing {rounds} rounds")
    rates = common.interleaved_rates(functions, batch, rounds, calls)
    return {
        "size": size,
        "image_side": image_side,
        "batch": batch,
        "rounds": rounds,
        "calls_per_round": calls,
        "parameters": {n: _count_parameters(m) for n, (m, _) in models.items()},
        "rates": rates,
    }


def worker(cases, full):
    import keras

    results = {"backend": keras.backend.backend(), "cases": []}
    if results["backend"] == "torch":
        import torch

        results["torch_threads"] = torch.get_num_threads()
        from keras_tips.backend.torch_kernels import onednn_linear

        results["torch_onednn_linear"] = onednn_linear() is not None
    for size, side, batch, rounds, calls, warmup in cases:
        with_keras_ops = full or (size, side) == HEADLINE
        results["cases"].append(
            measure_case(size, side, batch, rounds, calls, warmup, with_keras_ops)
        )
    return results


# --- Report -----------------------------------------------------------------

LABELS = {
    "keras_tips": "keras_tips",
    "dinov2": "keras-hub DINOv2",
    "plain_torch": "plain PyTorch",
    "keras_tips_keras_ops": "keras_tips, Keras-op path (before)",
}


def report(results, quick):
    """Markdown: one table per case (rates, ratios), then notes."""
    by_backend = {r["backend"]: r for r in results if "error" not in r}
    torch_cases = {}
    if "torch" in by_backend:
        torch_cases = {
            (c["size"], c["image_side"]): c for c in by_backend["torch"]["cases"]
        }
    lines = [
        "Image-encoder inference, float32, random weights, images/s (median "
        "over interleaved rounds; higher is better). Ratios are medians of "
        "per-round ratios within one process; the plain-PyTorch ratio of the "
        "JAX and TensorFlow rows divides by the plain-PyTorch rate measured "
        "in the PyTorch process (a different process and time, so it is the "
        "noisier ratio).",
        "",
    ]
    cases = QUICK_CASES if quick else FULL_CASES
    headers = [
        "backend",
        "keras_tips",
        "keras-hub DINOv2",
        "plain PyTorch",
        "× DINOv2",
        "× plain PyTorch",
        "rounds",
    ]
    for size, side, batch, *_ in cases:
        rows = []
        for backend in common.BACKENDS:
            result = by_backend.get(backend)
            case = None
            if result is not None:
                case = next(
                    (
                        c
                        for c in result["cases"]
                        if (c["size"], c["image_side"]) == (size, side)
                    ),
                    None,
                )
            if case is None:
                rows.append([backend] + ["n/a"] * (len(headers) - 1))
                continue
            rates = case["rates"]
            tips = common.median(rates["keras_tips"])
            dino = common.median(rates["dinov2"])
            versus_dino = common.median_ratio(rates["keras_tips"], rates["dinov2"])
            plain_case = torch_cases.get((size, side))
            plain = None
            versus_plain = None
            if plain_case is not None and "plain_torch" in plain_case["rates"]:
                plain = common.median(plain_case["rates"]["plain_torch"])
                if backend == "torch":
                    versus_plain = common.median_ratio(
                        rates["keras_tips"], rates["plain_torch"]
                    )
                else:
                    versus_plain = tips / plain
            rows.append(
                [
                    backend,
                    common.fmt_rate(tips),
                    common.fmt_rate(dino),
                    common.fmt_rate(plain) if backend == "torch" else
                    f"({common.fmt_rate(plain)})",
                    common.fmt(versus_dino, 2, "×"),
                    common.fmt(versus_plain, 2, "×"),
                    case["rounds"],
                ]
            )
        headline = " (headline)" if (size, side) == HEADLINE else ""
        lines += [
            f"**{size}, {side} px, batch {batch}{headline}**",
            "",
            common.markdown_table(headers, rows),
            "",
        ]
    # Before / after of the PyTorch kernels.
    before_rows = []
    for (size, side), case in sorted(torch_cases.items()):
        rates = case["rates"]
        if "keras_tips_keras_ops" not in rates:
            continue
        before_rows.append(
            [
                f"{size}, {side} px, batch {case['batch']}",
                common.fmt_rate(common.median(rates["keras_tips_keras_ops"])),
                common.fmt_rate(common.median(rates["keras_tips"])),
                common.fmt(
                    common.median_ratio(
                        rates["keras_tips"], rates["keras_tips_keras_ops"]
                    ),
                    2,
                    "×",
                ),
            ]
        )
    if before_rows:
        lines += [
            "**PyTorch: fused inference kernels (after) against one Keras op "
            "per step (before), same process, interleaved**",
            "",
            common.markdown_table(
                ["case", "before (img/s)", "after (img/s)", "speed-up"],
                before_rows,
            ),
            "",
        ]
    errors = [r for r in results if "error" in r]
    for result in errors:
        lines += [f"- {result.get('backend', '?')}: failed: `{result['error']}`"]
    if "torch" in by_backend:
        torch_result = by_backend["torch"]
        lines += [
            f"PyTorch used {torch_result.get('torch_threads')} threads; "
            "oneDNN fused linear available: "
            f"{torch_result.get('torch_onednn_linear')}.",
            "",
        ]
    return "\n".join(lines)


def run(quick=False, backends=common.BACKENDS, full_torch=False, timeout=None):
    """Runs one worker per backend; returns (results, Markdown)."""
    results = []
    for backend in backends:
        common.log(f"image encoder: {backend}")
        arguments = ["--quick"] if quick else []
        if full_torch:
            arguments.append("--full")
        result = common.run_worker(
            os.path.abspath(__file__), backend, arguments, timeout=timeout
        )
        result.setdefault("backend", backend)
        results.append(result)
    return results, report(results, quick)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer, smaller runs.")
    parser.add_argument(
        "--full",
        action="store_true",
        help="Time the Keras-op path of keras_tips on PyTorch in every case.",
    )
    parser.add_argument("--backends", nargs="+", default=list(common.BACKENDS))
    parser.add_argument("--output", help="Also write the Markdown to this file.")
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_output:
        cases = QUICK_CASES if args.quick else FULL_CASES
        common.write_worker_output(args.worker_output, worker(cases, args.full))
        return 0
    _, markdown = run(args.quick, args.backends, args.full)
    common.report_markdown(markdown, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
