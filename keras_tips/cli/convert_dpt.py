"""`keras-tips convert-dpt`: an official TIPSv2 DPT head into a head preset."""

from keras_tips.models.tips_dpt_presets import DPT_TASKS
from keras_tips.models.tips_dpt_presets import TIPS_DPT_PRESETS


def _default_layers_help():
    """The released heads' encoder blocks by image-tower width, for --help."""
    by_width = {}
    for entry in TIPS_DPT_PRESETS.values():
        config = entry["config"]
        layers = ",".join(str(i) for i in config["encoder_layers"])
        by_width[config["input_embed_dim"]] = f"{entry['encoder_preset']} {layers}"
    return "; ".join(by_width[width] for width in sorted(by_width))


def parse_layers(text):
    """`"2,5,8,11"` -> `[2, 5, 8, 11]`, with an argparse error otherwise."""
    import argparse

    try:
        layers = [int(part) for part in text.split(",")]
    except ValueError:
        layers = None
    if layers is None or len(layers) != 4 or min(layers) < 0:
        raise argparse.ArgumentTypeError(
            f"expected four comma-separated block indices (0-based) such as "
            f"2,5,8,11; received {text!r}"
        )
    return layers


def add_convert_dpt(subparsers):
    parser = subparsers.add_parser(
        "convert-dpt",
        help="Convert an official TIPSv2 DPT head (segmentation, depth, "
        "normals) into a head preset.",
        description=(
            "Reads a released DPT decoder checkpoint (<model>_<task>_dpt.zip, "
            "Scenic/Flax arrays) or an .npz in the PyTorch key layout that "
            "the official loader also accepts, without pickle; infers the "
            "sizes from the arrays; refuses a missing, unexpected or "
            "mis-shaped array, naming it; and writes a preset directory that "
            "keras_tips.TIPSDPTHead.from_preset and `keras-tips predict "
            "--head` load on any backend."
        ),
    )
    parser.add_argument("--checkpoint", required=True,
                        help="the head's .zip or .npz file")
    parser.add_argument("--task", required=True, choices=DPT_TASKS,
                        help="what the head predicts")
    parser.add_argument("--output", required=True, help="preset directory to write")
    parser.add_argument(
        "--layers", type=parse_layers, default=None, metavar="I,J,K,L",
        help="image-tower blocks (0-based) feeding the four DPT levels; by "
        "default those of the released head of the same width ("
        + _default_layers_help() + ")",
    )
    parser.add_argument("--min-depth", type=float, default=None,
                        help="depth heads: first bin centre in metres (0.001, or "
                        "the checkpoint's bin_centers)")
    parser.add_argument("--max-depth", type=float, default=None,
                        help="depth heads: last bin centre in metres (10.0, or "
                        "the checkpoint's bin_centers)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.set_defaults(run=run_convert_dpt)


def run_convert_dpt(args):
    from keras_tips.conversion.convert import convert_dpt_checkpoint

    head = convert_dpt_checkpoint(
        args.checkpoint,
        task=args.task,
        output_dir=args.output,
        encoder_layers=args.layers,
        min_depth=args.min_depth,
        max_depth=args.max_depth,
        overwrite=args.overwrite,
    )
    if head.task == "depth":
        outputs = (
            f"{head.num_outputs} depth bins from {head.min_depth:g} to "
            f"{head.max_depth:g} m"
        )
    elif head.task == "segmentation":
        outputs = f"{head.num_outputs} classes"
    else:
        outputs = "3 normal components"
    print(
        f"Wrote {args.output}: {head.task} head for image features of width "
        f"{head.input_embed_dim}, levels from blocks "
        f"{','.join(str(i) for i in head.encoder_layers)}, {outputs}, "
        f"DPT width {head.channels} ({head.count_params():,} parameters)."
    )
    return 0
