"""`keras-tips classify`: zero-shot classification of a folder of images."""

import sys

from keras_tips.cli.options import add_dtype_argument


def add_classify(subparsers):
    parser = subparsers.add_parser(
        "classify",
        help="Zero-shot classify a folder of images into given classes.",
        description=(
            "Encodes every image of --images (read as `embed` reads them; "
            "files that do not decode are skipped and counted) and scores it "
            "against each class name put into every prompt template "
            "(default: CLIP's 80 ImageNet templates), with the model's "
            "learned temperature. Prints one line per image: its name, the "
            "most probable class and its probability; with --json, one JSON "
            'object per line: {"image", "label", "probability", '
            '"probabilities": {class: p}}. The summary goes to stderr.'
        ),
    )
    parser.add_argument("--preset", required=True, help="preset directory or registered name")
    parser.add_argument("--images", required=True, help="folder of images")
    classes = parser.add_mutually_exclusive_group(required=True)
    classes.add_argument("--classes", help="class names, comma-separated: cat,dog,bird")
    classes.add_argument("--classes-file", help="text file of class names, one a line")
    parser.add_argument(
        "--templates", default="imagenet_80",
        help="prompt templates: imagenet_80 (CLIP's 80, default), imagenet_7 "
        "(CLIP's best 7), or a text file with one template a line, {} for "
        "the class",
    )
    parser.add_argument("--cls-token", choices=("cls_1", "cls_2"), default="cls_1",
                        help="image embedding compared with the prompts (cls_1: "
                        "aligned with web captions, as officially for zero-shot)")
    parser.add_argument("--json", action="store_true", help="print JSON Lines instead of text")
    parser.add_argument("--recursive", action="store_true",
                        help="also classify the images of subfolders")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize to this size instead of the preset's")
    add_dtype_argument(parser)
    parser.set_defaults(run=run_classify)


def _class_names(args):
    from keras_tips.evaluation.prompts import read_class_names

    if args.classes_file:
        return read_class_names(args.classes_file)
    names = [name.strip() for name in args.classes.split(",") if name.strip()]
    if len(names) < 2:
        raise ValueError(
            f"--classes needs at least two class names, comma-separated; "
            f"received {args.classes!r}."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"--classes names a class twice: {args.classes!r}.")
    return names


def run_classify(args):
    import json

    from keras_tips.cli.options import image_folder_files
    from keras_tips.cli.options import load_model
    from keras_tips.cli.options import report_skipped
    from keras_tips.cli.progress import progress
    from keras_tips.evaluation.prompts import load_templates
    from keras_tips.inference.classify import classify_image_files
    from keras_tips.inference.classify import zero_shot_classifier
    from keras_tips.inference.image_batches import ImageFileBatches
    from keras_tips.inference.image_batches import model_image_size

    class_names = _class_names(args)
    templates = load_templates(args.templates)
    names, paths = image_folder_files(args.images, args.recursive)
    model = load_model(args.preset, args.dtype)
    classifier = zero_shot_classifier(model, class_names, templates)
    batches = ImageFileBatches(
        paths, model_image_size(model, args.image_size), args.batch_size
    )
    results = classify_image_files(model, batches, classifier, args.cls_token)
    classified = 0
    for indices, probabilities in progress(results, "classifying", len(batches)):
        for index, row in zip(indices, probabilities):
            best = int(row.argmax())
            if args.json:
                record = {
                    "image": names[index],
                    "label": class_names[best],
                    "probability": float(row[best]),
                    "probabilities": {c: float(p) for c, p in zip(class_names, row)},
                }
                print(json.dumps(record, ensure_ascii=False))
            else:
                print(f"{names[index]}\t{class_names[best]}\t{row[best]:.3f}")
            classified += 1
    report_skipped([reason for _, reason in batches.skipped], sys.stderr)
    print(
        f"Classified {classified} of {len(paths)} images into "
        f"{len(class_names)} classes ({len(templates)} templates each); "
        f"skipped {len(batches.skipped)}.",
        file=sys.stderr,
    )
    if not classified:
        raise ValueError(f"None of the {len(paths)} image files could be read.")
    return 0
