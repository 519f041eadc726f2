"""`keras-tips show`: pictures of what a TIPS model sees."""

import os

import numpy as np


def add_show(subparsers):
    parser = subparsers.add_parser(
        "show",
        help="Write PNG pictures: PCA of patch features, zero-shot segmentation, "
        "text similarity maps, training curves.",
        description=(
            "Encodes a few images (shapes test scenes by default, or "
            "--images FOLDER, or --photos for the scikit-image photographs) "
            "and writes OUTPUT/pca.png (first three principal components of "
            "the patch features as RGB), OUTPUT/zero_shot_segmentation.png "
            "(for shapes), OUTPUT/similarity.png (cosine similarity of each "
            "patch to --query) and, with --history, OUTPUT/curves.png."
        ),
    )
    parser.add_argument("--preset", required=True, help="preset directory or registered name")
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", help="folder of images")
    source.add_argument("--photos", action="store_true", help="scikit-image's photographs")
    parser.add_argument("--num-images", type=int, default=6, help="images to draw")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side to resize to (default: the preset's; 112 for shapes)")
    parser.add_argument("--query", default="a red circle", help="text for the similarity map")
    parser.add_argument("--history", default=None, help="history.jsonl of a pretraining run")
    parser.set_defaults(run=run_show)


def _images(args, model):
    if args.images or args.photos:
        from keras_tips.data.image_files import list_image_files
        from keras_tips.data.image_files import load_image

        size = args.image_size or model.preprocessor.image_converter.image_size[0]
        if args.photos:
            from keras_tips.data.photos import SkimagePhotosSource

            source = SkimagePhotosSource()
            paths = [path for path, _, _ in source.photos]
        else:
            names = list_image_files(args.images)
            paths = [os.path.join(args.images, n) for n in names]
        if not paths:
            raise ValueError("No images found.")
        images = [load_image(path, (size, size)) for path in paths[: args.num_images]]
        return np.stack(images), None
    from keras_tips.data.shapes import ShapesDataset

    size = args.image_size or 112
    dataset = ShapesDataset("test", args.num_images, size)
    examples = [dataset[i] for i in range(args.num_images)]
    images = np.stack([e["image"] for e in examples]).astype("float32") / 255.0
    return images, np.stack([e["class_mask"] for e in examples])


def run_show(args):
    from keras_tips.evaluation.utils import patches_to_grid
    from keras_tips.evaluation.zero_shot_segmentation import similarity_maps
    from keras_tips.evaluation.zero_shot_segmentation import zero_shot_segment
    from keras_tips.models.tips_model import TIPSModel
    from keras_tips.visualize import image_grid
    from keras_tips.visualize import pca_image
    from keras_tips.visualize import plot_curves
    from keras_tips.visualize import segmentation_overlay
    from keras_tips.visualize import similarity_overlay

    model = TIPSModel.from_preset(args.preset)
    images, masks = _images(args, model)
    size = images.shape[1:3]
    features = model.encode_images(images, return_value_patches=True)
    patches = patches_to_grid(features["patches"], image_size=size)
    values = patches_to_grid(features["value_patches"], image_size=size)
    os.makedirs(args.output, exist_ok=True)
    written = []

    pca = pca_image(patches, image_size=size)
    path = os.path.join(args.output, "pca.png")
    image_grid(list(images) + list(pca), columns=len(images), path=path)
    written.append(path)

    query = model.encode_texts([args.query])
    similarity = similarity_maps(values, query)[..., 0]
    overlays = [similarity_overlay(image, s) for image, s in zip(images, similarity)]
    path = os.path.join(args.output, "similarity.png")
    image_grid(list(images) + overlays, columns=len(images), path=path)
    written.append(path)

    if masks is not None:
        from keras_tips.data import shapes
        from keras_tips.evaluation.shapes_benchmark import BACKGROUND_PROMPTS
        from keras_tips.evaluation.zero_shot import build_zero_shot_classifier

        names = ["background"] + list(shapes.SHAPE_CLASSES)
        classifier = build_zero_shot_classifier(
            model.encode_texts, names,
            [lambda c: BACKGROUND_PROMPTS[0] if c == "background" else f"a {c}."],
        )
        predicted = zero_shot_segment(values, classifier, image_size=size)
        truth = [segmentation_overlay(i, m, class_names=names) for i, m in zip(images, masks)]
        guess = [segmentation_overlay(i, p, class_names=names) for i, p in zip(images, predicted)]
        path = os.path.join(args.output, "zero_shot_segmentation.png")
        image_grid(list(images) + truth + guess, columns=len(images), path=path)
        written.append(path)

    if args.history:
        from keras_tips.training.loop import read_history

        history = read_history(os.path.dirname(os.path.abspath(args.history)))
        curves = {k: [h[k] for h in history] for k in history[0] if k != "step"} if history else {}
        if curves:
            path = os.path.join(args.output, "curves.png")
            plot_curves(curves, path=path, x_label="logging window")
            written.append(path)
    for path in written:
        print(f"Wrote {path}")
    return 0
