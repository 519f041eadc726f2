"""`keras-tips`: the command line of keras_tips.

Each verb parses its arguments, calls the library and prints the result; the
work itself lives in the package so it is usable from Python too.
"""

import argparse
import json
import os
import sys

from keras_tips.data.image_files import IMAGE_SUFFIXES


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


def _add_embed(subparsers):
    parser = subparsers.add_parser(
        "embed",
        help="Embed a folder of images or a text file into .npy arrays.",
        description=(
            f"Images (every {'/'.join(IMAGE_SUFFIXES)} file of a folder, "
            "sorted by name) are resized to the preset's resolution and "
            "encoded; a text file is encoded line by line. Writes "
            "<output>_cls_1.npy, <output>_cls_2.npy, <output>_patches.npy for "
            "images or <output>.npy for texts, plus <output>_index.json "
            "naming the rows."
        ),
    )
    parser.add_argument("--preset", required=True, help="preset directory or registered name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of images")
    source.add_argument("--texts", help="UTF-8 text file, one text per line")
    parser.add_argument("--output", required=True, help="output path prefix")
    parser.add_argument("--batch-size", type=int, default=16, help="inputs per forward pass")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize to this size instead of the preset's")
    parser.set_defaults(run=_run_embed)


def _run_embed(args):
    import numpy as np

    from keras_tips import TIPSModel
    from keras_tips.cli.progress import progress
    from keras_tips.data.image_files import list_image_files
    from keras_tips.data.image_files import load_image

    model = TIPSModel.from_preset(args.preset)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    if args.texts:
        with open(args.texts, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f]
        if not texts:
            raise ValueError(f"{args.texts} has no lines.")
        np.save(args.output + ".npy", model.encode_texts(texts, args.batch_size))
        rows = texts
        print(f"Embedded {len(texts)} texts into {args.output}.npy")
    else:
        names = list_image_files(args.images)
        if not names:
            raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {args.images}.")
        size = (args.image_size,) * 2 if args.image_size else (
            model.preprocessor.image_converter.image_size
        )
        chunks = []
        for start in progress(range(0, len(names), args.batch_size), "embedding"):
            batch = np.stack([
                load_image(os.path.join(args.images, n), size)
                for n in names[start:start + args.batch_size]
            ])
            chunks.append(model.encode_images(batch, batch_size=args.batch_size))
        for key in ("cls_1", "cls_2", "patches"):
            np.save(f"{args.output}_{key}.npy", np.concatenate([c[key] for c in chunks]))
        rows = names
        print(f"Embedded {len(names)} images into {args.output}_{{cls_1,cls_2,patches}}.npy")
    with open(args.output + "_index.json", "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False, indent=1)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-tips",
        description="TIPS image-text models for Keras 3 (JAX, TensorFlow, PyTorch).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    from keras_tips.cli.convert_dpt import add_convert_dpt
    from keras_tips.cli.demo import add_demo
    from keras_tips.cli.evaluate import add_evaluate
    from keras_tips.cli.predict import add_predict
    from keras_tips.cli.pretrain import add_ablation
    from keras_tips.cli.pretrain import add_pretrain
    from keras_tips.cli.show import add_show

    _add_convert(subparsers)
    add_convert_dpt(subparsers)
    add_pretrain(subparsers)
    add_ablation(subparsers)
    add_evaluate(subparsers)
    _add_embed(subparsers)
    add_show(subparsers)
    add_predict(subparsers)
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
    ) as error:
        print(f"keras-tips {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
