"""Embeddings of many files: streamed to memory-mapped `.npy` files.

`embed_image_files` holds one batch in memory whatever the number of
images: each batch's features are written into `.npy` files opened with
`numpy.lib.format.open_memmap`, whose pages the operating system writes to
disk. (Kept in memory, the patch tokens of 10,000 images at 448 px from a
B/14, 1,024 x 768 floats each, would take over 30 GB.)

The arrays are created with one row per listed file, before it is known
which files decode: finding out would mean decoding every image twice. The
rows of the readable files are written one after the other; if some files
were skipped, each array is then cut to the rows written, by rewriting the
shape in its `.npy` header in place and truncating the file (the header
keeps room for a longer row count, see `_truncate_rows`). So no row holds
garbage, and `<prefix>_index.json` names exactly the rows, in order.

Arrays are written under a temporary name and renamed when complete, so a
run that is stopped half-way leaves no file that looks finished.
"""

import json
import os

import numpy as np

from keras_tips.atomic_files import write_atomically
from keras_tips.inference.image_batches import ImageFileBatches
from keras_tips.inference.image_batches import model_image_size

IMAGE_OUTPUTS = ("cls_1", "cls_2", "patches", "value_patches")
DEFAULT_IMAGE_OUTPUTS = ("cls_1", "cls_2", "patches")
PARTIAL_SUFFIX = ".partial"


def check_outputs(outputs):
    """Validates the names of image outputs; returns them as a tuple.

    Args:
        outputs: a list of names from `IMAGE_OUTPUTS`, or one string of
            comma-separated names (`"cls_1,cls_2"`).
    """
    if isinstance(outputs, str):
        outputs = [name.strip() for name in outputs.split(",") if name.strip()]
    outputs = tuple(outputs)
    unknown = [name for name in outputs if name not in IMAGE_OUTPUTS]
    if unknown or not outputs:
        raise ValueError(
            f"Unknown image outputs {unknown}; choose one or more of "
            f"{', '.join(IMAGE_OUTPUTS)} (comma-separated)."
        )
    if len(set(outputs)) != len(outputs):
        raise ValueError(f"An image output is named twice in {list(outputs)}.")
    return outputs


def _truncate_rows(path, rows):
    """Cuts a C-ordered `.npy` file to its first `rows` rows, in place.

    The header is rewritten with the new shape; NumPy pads every header it
    writes with room for a 21-digit first dimension (so that arrays can
    grow in place), hence the new header has the old one's length and the
    data does not move. Then the file is truncated after the last row.
    """
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
            write_header = np.lib.format.write_array_header_1_0
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
            write_header = np.lib.format.write_array_header_2_0
        data_offset = f.tell()
        if fortran_order or rows > shape[0]:
            raise ValueError(f"Cannot cut {path} {shape} to {rows} rows.")
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": (int(rows),) + tuple(shape[1:]),
        }
        f.seek(0)
        write_header(f, header)
        if f.tell() != data_offset:
            # Not expected with any NumPy that pads headers for growth; the
            # file would be unreadable, so stop with a clear error.
            raise RuntimeError(
                f"The new .npy header of {path} has another length "
                f"({f.tell()} bytes, not {data_offset}); the array was not cut."
            )
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        f.truncate(data_offset + int(rows) * row_bytes)


def embed_image_files(
    model,
    paths,
    output_prefix,
    outputs=DEFAULT_IMAGE_OUTPUTS,
    image_size=None,
    batch_size=16,
    names=None,
    progress=None,
):
    """Embeds image files into `.npy` files, in memory constant in their number.

    Writes `<output_prefix>_<output>.npy` for each output (float32, one row
    per readable image, in the order of `paths`), `<output_prefix>_index.json`
    (the list of the rows' names) and `<output_prefix>_skipped.json` (a list
    of `{"name", "reason"}` for the files that could not be read, empty when
    none was skipped). See the module docstring for how memory stays
    constant.

    Args:
        model: a `TIPSModel`.
        paths: list of image file paths.
        output_prefix: str. Path prefix of the files written.
        outputs: names from `IMAGE_OUTPUTS`: `"cls_1"`, `"cls_2"` (B, D),
            `"patches"` (B, N, D), `"value_patches"` (B, N, D, the last
            block's value embeddings); or a comma-separated string.
        image_size: optional int or (height, width); by default the preset's.
        batch_size: int. Images per forward pass (and in memory).
        names: optional list of the names given to the rows in the index
            (default: `paths`).
        progress: optional callable `(iterable, description, total) ->
            iterable` wrapping the batches, e.g. a progress bar.

    Returns:
        A dict: `"rows"` (int, images embedded), `"skipped"` (the skipped
        list), `"files"` (output name -> `.npy` path) and `"index"` (path).

    Example:
    ```python
    names = list_image_files("photos", recursive=True)
    summary = embed_image_files(
        model, [os.path.join("photos", n) for n in names], "out/photos",
        outputs=("cls_1", "cls_2"), names=names,
    )
    cls_1 = np.load("out/photos_cls_1.npy", mmap_mode="r")
    ```
    """
    outputs = check_outputs(outputs)
    paths = [os.fspath(path) for path in paths]
    names = list(paths if names is None else names)
    if len(names) != len(paths):
        raise ValueError(f"{len(names)} names for {len(paths)} paths.")
    if not paths:
        raise ValueError("No image files to embed.")
    size = model_image_size(model, image_size)
    directory = os.path.dirname(os.path.abspath(output_prefix))
    os.makedirs(directory, exist_ok=True)
    final = {key: f"{output_prefix}_{key}.npy" for key in outputs}
    partial = {key: path + PARTIAL_SUFFIX for key, path in final.items()}
    batches = ImageFileBatches(paths, size, batch_size)
    iterable = batches if progress is None else progress(
        batches, "embedding", len(batches)
    )
    arrays = {}
    rows = []
    try:
        for indices, images in iterable:
            features = model.encode_images(
                images,
                batch_size=len(images),
                return_value_patches="value_patches" in outputs,
            )
            if not arrays:
                for key in outputs:
                    arrays[key] = np.lib.format.open_memmap(
                        partial[key], mode="w+", dtype="float32",
                        shape=(len(paths),) + features[key].shape[1:],
                    )
            start = len(rows)
            for key in outputs:
                arrays[key][start : start + len(indices)] = features[key]
            rows.extend(names[i] for i in indices)
        if not rows:
            raise ValueError(
                f"None of the {len(paths)} image files could be read; e.g. "
                f"{batches.skipped[0][1]}"
            )
        for key in outputs:
            arrays[key].flush()
    except BaseException:
        arrays.clear()
        for path in partial.values():
            if os.path.exists(path):
                os.remove(path)
        raise
    # Closes the memory maps (NumPy has no explicit close) before the files
    # are cut and renamed.
    arrays.clear()
    for key in outputs:
        if len(rows) < len(paths):
            _truncate_rows(partial[key], len(rows))
        os.replace(partial[key], final[key])
    skipped = [{"name": names[i], "reason": reason} for i, reason in batches.skipped]
    index = f"{output_prefix}_index.json"
    write_atomically(index, json.dumps(rows, ensure_ascii=False, indent=1))
    write_atomically(
        f"{output_prefix}_skipped.json",
        json.dumps(skipped, ensure_ascii=False, indent=1),
    )
    return {"rows": len(rows), "skipped": skipped, "files": final, "index": index}


def embed_texts(model, texts, output_path, batch_size=256, progress=None):
    """Embeds texts into one `.npy` file (T, D), streamed batch by batch.

    Args:
        model: a `TIPSModel`.
        texts: list of str.
        output_path: str. The `.npy` file to write.
        batch_size: int. Texts per forward pass.
        progress: optional callable `(iterable, description, total) ->
            iterable`.

    Returns:
        The number of texts embedded.

    Example:
    ```python
    embed_texts(model, ["a dog", "a cat"], "out/texts.npy")
    ```
    """
    texts = list(texts)
    if not texts:
        raise ValueError("No texts to embed.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1; received {batch_size}.")
    os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
    partial = output_path + PARTIAL_SUFFIX
    starts = range(0, len(texts), int(batch_size))
    if progress is not None:
        starts = progress(starts, "embedding", len(starts))
    array = None
    try:
        for start in starts:
            embeddings = model.encode_texts(
                texts[start : start + int(batch_size)], batch_size
            )
            if array is None:
                array = np.lib.format.open_memmap(
                    partial, mode="w+", dtype="float32",
                    shape=(len(texts),) + embeddings.shape[1:],
                )
            array[start : start + len(embeddings)] = embeddings
        array.flush()
    except BaseException:
        array = None
        if os.path.exists(partial):
            os.remove(partial)
        raise
    array = None  # Closes the memory map before the file is renamed.
    os.replace(partial, output_path)
    return len(texts)


def encode_image_files(
    model,
    paths,
    outputs=("cls_1", "cls_2"),
    image_size=None,
    batch_size=32,
    progress=None,
):
    """Encodes image files into in-memory features (for evaluations).

    Memory is (number of images) x (feature size) per output: meant for the
    CLS embeddings; stream patch features with `embed_image_files`.

    Args:
        model: a `TIPSModel`.
        paths: list of image file paths.
        outputs: names from `IMAGE_OUTPUTS`.
        image_size: optional int or (height, width); by default the preset's.
        batch_size: int. Images per forward pass.
        progress: optional callable `(iterable, description, total) ->
            iterable`.

    Returns:
        `(features, kept, skipped)`: a dict output -> float32 array with one
        row per readable image, the int array of their positions in
        `paths`, and the `(index, reason)` list of the files skipped.

    Example:
    ```python
    features, kept, skipped = encode_image_files(model, paths)
    features["cls_1"].shape  # (len(kept), D)
    ```
    """
    outputs = check_outputs(outputs)
    if not paths:
        raise ValueError("No image files to encode.")
    batches = ImageFileBatches(paths, model_image_size(model, image_size), batch_size)
    iterable = batches if progress is None else progress(
        batches, "encoding images", len(batches)
    )
    chunks, kept = {key: [] for key in outputs}, []
    for indices, images in iterable:
        features = model.encode_images(
            images,
            batch_size=len(images),
            return_value_patches="value_patches" in outputs,
        )
        for key in outputs:
            chunks[key].append(features[key])
        kept.append(indices)
    if not kept:
        raise ValueError(
            f"None of the {len(paths)} image files could be read; e.g. "
            f"{batches.skipped[0][1]}"
        )
    features = {key: np.concatenate(chunks[key]) for key in outputs}
    return features, np.concatenate(kept), list(batches.skipped)
