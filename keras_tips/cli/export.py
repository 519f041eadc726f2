"""`keras-tips export`: one tower of a preset for serving (SavedModel, LiteRT
or ONNX), through `keras_tips.export.export_tower`."""

from keras_tips.export import EXPORT_FORMATS
from keras_tips.export import TOWERS


def _formats_help():
    """Each format with the backend that exports it, for --help."""
    return "; ".join(
        f"{name} (KERAS_BACKEND={entry.backend})" for name, entry in EXPORT_FORMATS.items()
    )


def _image_size(text):
    """`"448"` -> 448, `"448x672"` -> (448, 672), with an argparse error
    otherwise."""
    import argparse

    try:
        sides = tuple(int(side) for side in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or min(sides) <= 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive size such as 448 or 448x672 (height x width); "
            f"received {text!r}"
        )
    return sides[0] if len(sides) == 1 else sides


def add_export(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="Export the image or text tower of a preset for serving "
        "(saved_model, litert or onnx).",
        description=(
            "Wraps one tower of a preset in a Keras model over its raw inputs "
            "(images in [0, 1] at the exported size; token ids and padding "
            "flags of the preset's tokenizer) and writes it with Keras' export. "
            f"Each format exports on one backend: {_formats_help()}."
        ),
    )
    parser.add_argument("--preset", required=True,
                        help="registered name, preset directory or hf:// handle")
    parser.add_argument("--tower", required=True, choices=TOWERS,
                        help="vision (images -> cls_1, cls_2, patches) or text "
                        "(token ids and padding mask -> text_embeddings)")
    parser.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS),
                        dest="export_format",
                        help="the serving format; each exports on one backend "
                        "(see above)")
    parser.add_argument("--output", required=True,
                        help="directory (saved_model) or .tflite / .onnx file")
    parser.add_argument(
        "--image-size", type=_image_size, default=None,
        help="vision input size, 448 or HxW (default: any size for saved_model, "
        "the preset's size otherwise)",
    )
    parser.add_argument("--batch-size", type=int, default=None,
                        help="fixed batch size (default: dynamic; 1 for onnx)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.set_defaults(run=_run_export)


def _run_export(args):
    from keras_tips.export import export_tower
    from keras_tips.models.tips_model import TIPSModel

    model = TIPSModel.from_preset(args.preset)
    path = export_tower(
        model,
        args.tower,
        args.export_format,
        args.output,
        image_size=args.image_size,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
    )
    print(f"Exported the {args.tower} tower of {args.preset} as {args.export_format} to {path}.")
    return 0
