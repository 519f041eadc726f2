"""`keras-tips predict`: dense maps of a folder of images from a DPT head.

Every image is squash-resized to the encoder's resolution (448 x 448 for
the TIPSv2 presets, whose released heads were trained at that size), read
through `keras_tips.data.image_files.load_image`, and the head's map is
brought back to the file's own size, so that `<name>.npy` lines up with the
pixels of `<name>`:

- segmentation: the logits at the encoder's resolution, their argmax,
  resized to the file's size by nearest neighbour (class ids; uint8 up to
  256 classes);
- depth: the head's native map, resized bilinearly (metres, float32);
- normals: the head's native map, normalised, resized bicubically and
  normalised again, as the official notebook shows them (float32 unit
  vectors).

At the encoder's resolution each is exactly what the official notebook
computes. Files that do not decode are skipped, named and counted.
"""

import json
import os
import sys

from keras_tips.models.tips_dpt_presets import ADE20K_CLASS_NAMES
from keras_tips.models.tips_dpt_presets import DPT_TASKS
from keras_tips.models.tips_dpt_presets import TIPS_DPT_PRESETS

INDEX_FILE = "index.json"


def add_predict(subparsers):
    parser = subparsers.add_parser(
        "predict",
        help="Segmentation, depth or surface normals of a folder of images, "
        "from a DPT head on a TIPS encoder.",
        description=(
            "Runs a TIPS image tower and a DPT head over every image of "
            "--images (sorted by name) and writes, for each image NAME, "
            "OUTPUT/NAME.png (segmentation: class colours with a legend; "
            "depth: colour-mapped with a scale bar in metres; normals: "
            "(n + 1) / 2 as RGB) and OUTPUT/NAME.npy (class ids (H, W), "
            "depth (H, W) in metres, or unit normals (H, W, 3)) at the "
            "image's own size, and OUTPUT/index.json listing them. Files that "
            "are not readable images are skipped and counted. Without "
            "--head, the released head of --task for the registered "
            "encoder --preset is used."
        ),
    )
    parser.add_argument("--preset", required=True,
                        help="encoder preset directory or registered name "
                        "(e.g. tips_v2_oss_b14)")
    parser.add_argument("--task", required=True, choices=DPT_TASKS,
                        help="what to predict")
    parser.add_argument("--head", default=None,
                        help="DPT head preset directory or registered name "
                        "(default: the released head of --task for --preset)")
    parser.add_argument("--images", required=True, help="folder of images")
    parser.add_argument("--output", required=True, help="folder for the maps")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--image-size", type=int, default=None,
                        help="side the images are squash-resized to (a multiple "
                        "of 14; default: the preset's, 448 for TIPSv2)")
    parser.add_argument("--class-names", default=None,
                        help="segmentation: UTF-8 file with one class name a line, "
                        "in output order (default: ADE20K's for 150-class heads)")
    parser.set_defaults(run=run_predict)


def released_head(preset, task):
    """The registered DPT head of `task` for the registered encoder `preset`.

    Args:
        preset: str. An encoder preset name.
        task: `"segmentation"`, `"depth"` or `"normals"`.

    Returns:
        The head's registered name.

    Raises:
        ValueError: no head of `task` is registered for `preset`; the
            message lists the encoders that have one.
    """
    for name, entry in TIPS_DPT_PRESETS.items():
        if entry["encoder_preset"] == preset and entry["config"]["task"] == task:
            return name
    encoders = sorted({entry["encoder_preset"] for entry in TIPS_DPT_PRESETS.values()})
    raise ValueError(
        f"No released {task} head decodes {preset!r} (released heads exist for "
        f"{', '.join(encoders)}). Pass the head to use with --head NAME|DIR."
    )


def _class_names(args, head):
    if head.task != "segmentation":
        if args.class_names:
            raise ValueError(f"--class-names applies to segmentation; --task is {head.task}.")
        return None
    if args.class_names:
        with open(args.class_names, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != head.num_outputs:
            raise ValueError(
                f"{args.class_names} names {len(names)} classes; the head "
                f"predicts {head.num_outputs}."
            )
        return names
    if head.num_outputs == len(ADE20K_CLASS_NAMES):
        return list(ADE20K_CLASS_NAMES)
    return [f"class {i}" for i in range(head.num_outputs)]


def _map_at_file_size(task, native, input_size, file_size):
    """One image's map at the file's size, from the head's native output
    (see the module docstring)."""
    import numpy as np

    from keras_tips import normalize_normals
    from keras_tips.evaluation.utils import bilinear_resize
    from keras_tips.visualize import nearest_resize

    if task == "normals":
        return normalize_normals(native, image_size=file_size)
    # Bilinear with align_corners=False, as `TIPSModel.predict_dense` resizes
    # to the input size; in NumPy, so that files of many sizes do not each
    # compile the resize on JAX.
    if task == "depth":
        return bilinear_resize(native, file_size)[..., 0]
    logits = bilinear_resize(native, input_size)
    dtype = np.uint8 if native.shape[-1] <= 256 else np.int32
    return nearest_resize(np.argmax(logits, axis=-1), file_size).astype(dtype)


def _picture(task, values, class_names):
    from keras_tips.visualize import depth_image
    from keras_tips.visualize import label_map_image
    from keras_tips.visualize import normals_image

    if task == "segmentation":
        return label_map_image(values, class_names=class_names)
    if task == "depth":
        return depth_image(values, unit="m")
    return normals_image(values)


def run_predict(args):
    import numpy as np

    from keras_tips import TIPSDPTHead
    from keras_tips import TIPSModel
    from keras_tips.cli.progress import progress
    from keras_tips.data.image_files import IMAGE_SUFFIXES
    from keras_tips.data.image_files import UnreadableImageError
    from keras_tips.data.image_files import list_image_files
    from keras_tips.data.image_files import load_image
    from keras_tips.data.image_files import read_image_size
    from keras_tips.visualize import save_png

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; received {args.batch_size}.")
    if not os.path.isdir(args.images):
        raise ValueError(f"--images {args.images!r} is not a folder.")
    names = list_image_files(args.images)
    if not names:
        raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {args.images}.")
    head_name = args.head or released_head(args.preset, args.task)
    head = TIPSDPTHead.from_preset(head_name)
    if head.task != args.task:
        raise ValueError(
            f"The head {head_name!r} predicts {head.task}, not {args.task}: pass "
            f"--task {head.task} or another --head."
        )
    class_names = _class_names(args, head)
    model = TIPSModel.from_preset(args.preset)
    size = (args.image_size,) * 2 if args.image_size else tuple(
        model.preprocessor.image_converter.image_size
    )
    os.makedirs(args.output, exist_ok=True)
    written, skipped = [], []
    rows = min(args.batch_size, len(names))
    batches = range(0, len(names), args.batch_size)
    for start in progress(batches, f"predicting {args.task}", total=len(batches)):
        batch_names, images = [], []
        for name in names[start : start + args.batch_size]:
            path = os.path.join(args.images, name)
            try:
                images.append(load_image(path, size))
            except UnreadableImageError as error:
                print(f"Skipped {name}: {error}", file=sys.stderr)
                skipped.append({"image": name, "error": str(error)})
                continue
            batch_names.append(name)
        if not images:
            continue
        # Every batch has the same number of rows (the last one and those
        # with skipped files are padded), so the forward pass is compiled
        # once. The head's own resolution, resized one image at a time: a
        # batch of 150-class logits at 448 x 448 would hold 120 MB an image.
        padding = [np.zeros_like(images[0])] * (rows - len(images))
        native = model.predict_dense(
            np.stack(images + padding), head, batch_size=rows, native_resolution=True
        )
        for name, prediction in zip(batch_names, native):
            path = os.path.join(args.images, name)
            values = _map_at_file_size(args.task, prediction, size, read_image_size(path))
            np.save(os.path.join(args.output, name + ".npy"), values)
            save_png(_picture(args.task, values, class_names), os.path.join(args.output, name + ".png"))
            written.append({
                "image": name, "png": name + ".png", "npy": name + ".npy",
                "shape": list(values.shape), "dtype": str(values.dtype),
            })
    if not written:
        raise ValueError(
            f"None of the {len(names)} image files in {args.images} could be "
            "read (see the messages above)."
        )
    index = {
        "preset": os.fspath(args.preset), "head": os.fspath(head_name),
        "task": args.task, "image_size": list(size),
        "units": {"segmentation": "class id", "depth": "metres",
                  "normals": "unit vector (x, y, z)"}[args.task],
        "class_names": class_names, "maps": written, "skipped": skipped,
    }
    with open(os.path.join(args.output, INDEX_FILE), "w", encoding="utf-8") as f:
        json.dump(index, f, ensure_ascii=False, indent=1)
    print(
        f"Wrote {len(written)} {args.task} maps (PNG and .npy) to {args.output}; "
        f"skipped {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''}"
        + (f" ({', '.join(s['image'] for s in skipped)})." if skipped else ".")
    )
    return 0
