"""`keras-tips embed`: image or text embeddings into .npy files."""

import os
import sys

from keras_tips.cli.options import add_dtype_argument
from keras_tips.data.image_files import IMAGE_SUFFIXES


def add_embed(subparsers):
    parser = subparsers.add_parser(
        "embed",
        help="Embed a folder of images or a text file into .npy arrays.",
        description=(
            f"Images (every {'/'.join(IMAGE_SUFFIXES)} file of a folder, "
            "sorted by name; with --recursive, of its subfolders too) are "
            "turned upright by their EXIF orientation, resized to the "
            "preset's resolution and encoded, one batch at a time: the "
            "arrays <output>_<name>.npy of --outputs are written as "
            "memory-mapped files, so memory does not grow with the number "
            "of images. <output>_index.json names the rows; files that do "
            "not decode are skipped, counted and listed in "
            "<output>_skipped.json. A text file is encoded line by line into "
            "<output>.npy, with <output>_index.json."
        ),
    )
    parser.add_argument("--preset", required=True, help="preset directory or registered name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of images")
    source.add_argument("--texts", help="UTF-8 text file, one text per line")
    parser.add_argument("--output", required=True, help="output path prefix")
    parser.add_argument(
        "--outputs", default="cls_1,cls_2,patches",
        help="image arrays to write, comma-separated, from cls_1, cls_2, "
        "patches, value_patches (default cls_1,cls_2,patches; patches are "
        "N x D per image: leave them out to save disk)",
    )
    parser.add_argument("--recursive", action="store_true",
                        help="also embed the images of subfolders (rows named by relative path)")
    parser.add_argument("--batch-size", type=int, default=16, help="inputs per forward pass")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize to this size instead of the preset's")
    add_dtype_argument(parser)
    parser.set_defaults(run=run_embed)


def run_embed(args):
    import json

    from keras_tips.cli.options import image_folder_files
    from keras_tips.cli.options import load_model
    from keras_tips.cli.options import report_skipped
    from keras_tips.cli.progress import progress
    from keras_tips.inference.embed import check_outputs
    from keras_tips.inference.embed import embed_image_files
    from keras_tips.inference.embed import embed_texts

    if args.texts:
        with open(args.texts, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f]
        if not texts:
            raise ValueError(f"{args.texts} has no lines.")
        model = load_model(args.preset, args.dtype)
        embed_texts(model, texts, args.output + ".npy", args.batch_size, progress)
        with open(args.output + "_index.json", "w", encoding="utf-8") as f:
            json.dump(texts, f, ensure_ascii=False, indent=1)
        print(f"Embedded {len(texts)} texts into {args.output}.npy")
        return 0
    outputs = check_outputs(args.outputs)
    names, paths = image_folder_files(args.images, args.recursive)
    model = load_model(args.preset, args.dtype)
    summary = embed_image_files(
        model, paths, args.output, outputs=outputs, image_size=args.image_size,
        batch_size=args.batch_size, names=names, progress=progress,
    )
    report_skipped([s["reason"] for s in summary["skipped"]], sys.stderr)
    print(
        f"Embedded {summary['rows']} of {len(paths)} images into "
        f"{args.output}_{{{','.join(outputs)}}}.npy (rows named in "
        f"{os.path.basename(summary['index'])}); skipped "
        f"{len(summary['skipped'])}."
    )
    return 0
