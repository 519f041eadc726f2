"""Options several `keras-tips` verbs share: the model's dtype, loading a
preset, image folders."""

import os

# Keras dtype policies a model can run in. "bfloat16" / "float16" keep the
# weights in that type too; "mixed_*" keep float32 weights and compute in
# the lower precision.
DTYPES = ("float32", "bfloat16", "float16", "mixed_bfloat16", "mixed_float16")


def add_dtype_argument(parser, default="the preset's, float32 for the released ones"):
    parser.add_argument(
        "--dtype", choices=DTYPES, default=None,
        help=f"Keras dtype policy of the model (default: {default}); the "
        "bfloat16 ones save memory and are faster on accelerators",
    )


def load_model(preset, dtype=None):
    """`TIPSModel.from_preset`, in `dtype` when given."""
    from keras_tips.models.tips_model import TIPSModel

    return TIPSModel.from_preset(preset, **({"dtype": dtype} if dtype else {}))


def image_folder_files(folder, recursive=False):
    """(names, paths) of the images of a folder; a clear error when there
    are none."""
    from keras_tips.data.image_files import IMAGE_SUFFIXES
    from keras_tips.data.image_files import list_image_files

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"No folder {folder!r}.")
    names = list_image_files(folder, recursive=recursive)
    if not names:
        hint = "" if recursive else " (add --recursive to look in subfolders)"
        raise ValueError(
            f"No images ({', '.join(IMAGE_SUFFIXES)}) in {folder}{hint}."
        )
    return names, [os.path.join(folder, name) for name in names]


def report_skipped(skipped, stream, limit=5):
    """Prints how many files were skipped and why (the first `limit`)."""
    if not skipped:
        return
    print(f"Skipped {len(skipped)} file(s) that could not be read:", file=stream)
    for reason in skipped[:limit]:
        print(f"  {reason}", file=stream)
    if len(skipped) > limit:
        print(f"  ... and {len(skipped) - limit} more", file=stream)
