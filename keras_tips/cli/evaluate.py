"""`keras-tips evaluate`: a preset on the embedded shapes benchmark, or on
the user's data in the layouts researchers already have."""

import json
import os
import sys

from keras_tips.cli.options import add_dtype_argument

# Options that belong to some kinds of data only: option -> those kinds.
_OPTION_KINDS = {
    "num_train": ("shapes",),
    "num_test": ("shapes",),
    "probe_epochs": ("shapes",),
    "support": ("image_folder",),
    "class_names": ("image_folder", "segmentation"),
    "templates": ("image_folder", "segmentation"),
    "images_root": ("captions",),
    "split": ("captions", "segmentation"),
    "patch_features": ("segmentation",),
}
SHAPES_DEFAULTS = {"num_train": 400, "num_test": 300, "image_size": 56, "probe_epochs": 30}


def add_evaluate(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="Evaluate a preset on the shapes benchmark or on your own data "
        "(class folders, captions, segmentation maps).",
        description=(
            "Evaluates a preset on one kind of data and prints a table "
            "(with --output, also a JSON file). --shapes: the embedded shapes "
            "benchmark (zero-shot, retrieval, k-NN, linear segmentation and "
            "depth probes, zero-shot segmentation on generated scenes). "
            "--image-folder DIR: one subfolder per class (ImageNet layout; "
            "class ids in sorted folder order): zero-shot top-1/5 with a "
            "prompt ensemble and, with --support DIR (e.g. ImageNet's train/ "
            "for its val/), weighted k-NN top-1/5. --captions FILE: a "
            "Karpathy-split JSON (COCO, Flickr30k) or a JSONL index "
            '({"image", "caption"}): image<->text recall@1/5/10. '
            "--segmentation DIR: ADE20K-style images/ and annotations/ (label "
            "0 = unlabelled, ignored; k = the k-th of --class-names): "
            "zero-shot segmentation mIoU. Unreadable images are skipped and "
            "counted."
        ),
    )
    parser.add_argument("--preset", required=True, help="preset directory or registered name")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--shapes", action="store_true",
                      help="the embedded shapes benchmark (generated scenes)")
    data.add_argument("--image-folder", help="folder of class folders (ImageNet layout)")
    data.add_argument("--captions",
                      help="Karpathy-split caption JSON or JSONL index (retrieval)")
    data.add_argument("--segmentation",
                      help="ADE20K-style folder with images/ and annotations/")
    parser.add_argument("--output", default=None, help="results JSON file")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side images are resized to (default: the preset's; "
                        f"{SHAPES_DEFAULTS['image_size']} for the shapes scenes)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    add_dtype_argument(parser)
    parser.add_argument("--support", default=None,
                        help="image folder: class folders of the same classes, the k-NN memory")
    parser.add_argument("--class-names", default=None,
                        help="image folder / segmentation: class names, one a line "
                        "(image folder: in sorted folder order; segmentation: label ids 1, 2, ...)")
    parser.add_argument("--templates", default=None,
                        help="image folder / segmentation: imagenet_80 (CLIP's 80, default), "
                        "imagenet_7, or a file with one template a line ({} = the class)")
    parser.add_argument("--images-root", default=None,
                        help="captions: folder the image paths are relative to "
                        "(default: the caption file's folder)")
    parser.add_argument("--split", default=None,
                        help="captions: the Karpathy split scored (default test); "
                        "segmentation: subfolder of images/ and annotations/ (e.g. validation)")
    parser.add_argument("--patch-features", choices=("value_patches", "patches"), default=None,
                        help="segmentation: features compared with the classes "
                        "(default value_patches, as the official notebooks)")
    parser.add_argument("--num-train", type=int, default=None,
                        help=f"shapes: validation scenes for probes / k-NN ({SHAPES_DEFAULTS['num_train']})")
    parser.add_argument("--num-test", type=int, default=None,
                        help=f"shapes: test scenes scored ({SHAPES_DEFAULTS['num_test']})")
    parser.add_argument("--probe-epochs", type=int, default=None,
                        help=f"shapes: epochs of the linear segmentation probe ({SHAPES_DEFAULTS['probe_epochs']})")
    parser.set_defaults(run=run_evaluate)


def _kind(args):
    for kind in ("shapes", "image_folder", "captions", "segmentation"):
        if getattr(args, kind):
            return kind
    raise ValueError("Choose the data: --shapes, --image-folder, --captions or --segmentation.")


def _check_options(args, kind):
    for name, kinds in _OPTION_KINDS.items():
        if kind not in kinds and getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            used_by = " / ".join("--" + k.replace("_", "-") for k in kinds)
            raise ValueError(f"{flag} applies to {used_by}, not to --{kind.replace('_', '-')}.")
    if kind == "segmentation" and args.class_names is None:
        raise ValueError(
            "--segmentation needs --class-names: a file naming the classes of "
            "label ids 1, 2, ... one a line."
        )


def _run_shapes(args, model):
    from keras_tips.evaluation.shapes_benchmark import evaluate_on_shapes

    options = {
        name: default if getattr(args, name) is None else getattr(args, name)
        for name, default in SHAPES_DEFAULTS.items()
    }
    metrics = evaluate_on_shapes(
        model, options["num_train"], options["num_test"], options["image_size"],
        options["probe_epochs"],
    )
    return {"metrics": metrics}


def _run_user_data(args, kind, model):
    from keras_tips.cli.progress import progress
    from keras_tips.evaluation.prompts import DEFAULT_PROMPT_ENSEMBLE
    from keras_tips.evaluation.prompts import load_templates
    from keras_tips.evaluation.prompts import read_class_names

    templates = load_templates(args.templates or DEFAULT_PROMPT_ENSEMBLE)
    common = dict(image_size=args.image_size, batch_size=args.batch_size, progress=progress)
    if kind == "image_folder":
        from keras_tips.evaluation.image_folder import evaluate_image_folder

        names = read_class_names(args.class_names) if args.class_names else None
        return evaluate_image_folder(
            model, args.image_folder, support_dir=args.support, class_names=names,
            templates=templates, **common,
        )
    if kind == "captions":
        from keras_tips.evaluation.caption_retrieval import evaluate_caption_retrieval
        from keras_tips.evaluation.caption_retrieval import read_captioned_images

        data = read_captioned_images(args.captions, args.split or "test", args.images_root)
        return evaluate_caption_retrieval(model, data, **common)
    from keras_tips.evaluation.segmentation_folder import evaluate_segmentation_folder

    return evaluate_segmentation_folder(
        model, args.segmentation, read_class_names(args.class_names),
        split=args.split, templates=templates,
        patch_features=args.patch_features or "value_patches", **common,
    )


def run_evaluate(args):
    from keras_tips.cli.options import load_model
    from keras_tips.cli.options import report_skipped
    from keras_tips.evaluation.shapes_benchmark import format_table

    kind = _kind(args)
    _check_options(args, kind)
    model = load_model(args.preset, args.dtype)
    if kind == "shapes":
        results = _run_shapes(args, model)
    else:
        results = _run_user_data(args, kind, model)
    name = os.path.basename(os.path.normpath(args.preset))
    print(format_table({name: results["metrics"]}))
    if results.get("counts"):
        print(", ".join(f"{key}: {value}" for key, value in results["counts"].items()))
    report_skipped(results.get("skipped", []), sys.stderr)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            # The shapes evaluation keeps its flat layout: metric -> value.
            json.dump(results["metrics"] if kind == "shapes" else results, f, indent=1)
    return 0
