"""Runs every benchmark and writes one Markdown report.

Sections, each measured in its own per-backend processes
(`benchmarks/common.py`):

1. Image-encoder inference: keras_tips against keras-hub's `DINOV2Backbone`
   and a plain PyTorch ViT (`benchmarks/image_encoder.py`).
2. Train step: images/s, model-FLOPs utilisation, memory per image, with
   and without bf16 and rematerialisation, and the input pipeline's rate
   against it (`benchmarks/train_step.py`).

The report starts with the machine, the library versions and the git
revision, so a table is never read without the set-up that produced it.

Run: `python benchmarks/run_all.py [--quick] [--output benchmarks/RESULTS.md]`
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks import image_encoder  # noqa: E402
from benchmarks import train_step  # noqa: E402


def header(quick, backends, seconds):
    machine = common.machine_info()
    versions = common.library_versions()
    load = machine["load_average"]
    lines = [
        "# keras_tips benchmarks",
        "",
        f"Written by `python benchmarks/run_all.py{' --quick' if quick else ''}` "
        f"at git revision `{common.git_revision()}` on {machine['date']} "
        f"({seconds / 60:.1f} min).",
        "",
        f"- Machine: {machine['cpu']}, {machine['logical_cores']} logical "
        f"cores, {common.fmt(machine['ram_gib'])} GiB RAM, no accelerator; "
        f"{machine['os']}; Python {machine['python']}.",
        "- Load average when the report was written: "
        + (", ".join(f"{x:.2f}" for x in load) if load else "n/a")
        + ".",
        "- Libraries: "
        + ", ".join(f"{name} {version}" for name, version in versions.items())
        + ".",
        f"- Backends: {', '.join(backends)}; each in its own process.",
        "",
    ]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer, shorter runs.")
    parser.add_argument("--backends", nargs="+", default=list(common.BACKENDS))
    parser.add_argument(
        "--output",
        default=os.path.join(common.REPOSITORY_ROOT, "benchmarks", "RESULTS.md"),
        help="Markdown report to write (default: benchmarks/RESULTS.md).",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.backends) - set(common.BACKENDS))
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {common.BACKENDS}")
    start = time.perf_counter()
    image_results, image_markdown = image_encoder.run(args.quick, args.backends)
    step_results, _, step_markdown = train_step.run(args.quick, args.backends)
    seconds = time.perf_counter() - start
    lines = header(args.quick, args.backends, seconds)
    lines += ["## Image-encoder inference", "", image_markdown, ""]
    lines += ["## Train step and input pipeline", "", step_markdown, ""]
    failed = [r for r in image_results + step_results if "error" in r]
    common.report_markdown("\n".join(lines), args.output)
    # A failed worker is reported in the tables; the exit code says so too.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
