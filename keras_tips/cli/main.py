"""`keras-tips`: the command line of keras_tips.

Each verb parses its arguments, calls the library and prints the result; the
work itself lives in the package so it is usable from Python too.
"""

import argparse
import sys


def _add_convert(subparsers):
    parser = subparsers.add_parser(
        "convert",
        help="Convert official TIPS .npz checkpoints into a Keras preset.",
        description=(
            "Reads the official PyTorch .npz checkpoints of TIPS (no pickle), "
            "infers the architecture from the arrays, checks every key and "
            "shape, and writes a preset directory that "
            "keras_tips.TIPSModel.from_preset loads on any backend."
        ),
    )
    parser.add_argument("--vision", required=True, help="<name>_vision.npz")
    parser.add_argument("--text", required=True, help="<name>_text.npz")
    parser.add_argument("--tokenizer", required=True, help="tokenizer.model")
    parser.add_argument("--output", required=True, help="preset directory to write")
    parser.add_argument(
        "--image-size", type=int, default=448,
        help="preprocessor resolution (448 for high-res models, 224 for g/14 low-res)",
    )
    parser.add_argument("--vision-num-heads", type=int, default=None,
                        help="attention heads of the image tower (inferred for S/B/L/So400m/g)")
    parser.add_argument("--text-num-heads", type=int, default=None,
                        help="attention heads of the text tower (inferred for standard widths)")
    parser.add_argument("--max-sequence-length", type=int, default=64,
                        help="tokenizer / text tower length (64)")
    parser.add_argument("--overwrite", action="store_true", help="replace --output")
    parser.set_defaults(run=_run_convert)


def _run_convert(args):
    from keras_tips.conversion.convert import convert_official_checkpoint

    model = convert_official_checkpoint(
        output_dir=args.output,
        overwrite=args.overwrite,
        vision_path=args.vision,
        text_path=args.text,
        tokenizer_path=args.tokenizer,
        image_size=args.image_size,
        vision_num_heads=args.vision_num_heads,
        text_num_heads=args.text_num_heads,
        max_sequence_length=args.max_sequence_length,
    )
    vision = model.backbone.vision_encoder
    text = model.backbone.text_encoder
    print(
        f"Wrote {args.output}: image tower {vision.num_layers} x {vision.hidden_dim} "
        f"({vision.count_params():,} parameters), text tower {text.num_layers} x "
        f"{text.hidden_dim} ({text.count_params():,} parameters), temperature "
        f"{model.temperature_for('cls_1'):.4g}."
    )
    return 0


def _version():
    import keras

    from keras_tips.backend import running_backend
    from keras_tips.version import __version__

    return (
        f"keras-tips {__version__} (Keras {keras.__version__}, backend "
        f"{running_backend()})"
    )


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-tips",
        description="TIPS image-text models for Keras 3 (JAX, TensorFlow, PyTorch).",
    )
    parser.add_argument(
        "--version", action="version", version=_version(),
        help="print the versions of keras_tips and Keras, and the backend",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    from keras_tips.cli.classify import add_classify
    from keras_tips.cli.convert_dpt import add_convert_dpt
    from keras_tips.cli.demo import add_demo
    from keras_tips.cli.embed import add_embed
    from keras_tips.cli.evaluate import add_evaluate
    from keras_tips.cli.export import add_export
    from keras_tips.cli.predict import add_predict
    from keras_tips.cli.pretrain import add_ablation
    from keras_tips.cli.pretrain import add_pretrain
    from keras_tips.cli.show import add_show

    _add_convert(subparsers)
    add_convert_dpt(subparsers)
    add_pretrain(subparsers)
    add_ablation(subparsers)
    add_evaluate(subparsers)
    add_embed(subparsers)
    add_classify(subparsers)
    add_show(subparsers)
    add_predict(subparsers)
    add_export(subparsers)
    add_demo(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (
        ValueError,
        OSError,
        RuntimeError,
        FloatingPointError,
        ImportError,  # An optional package (an extra) that is not installed.
    ) as error:
        print(f"keras-tips {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
