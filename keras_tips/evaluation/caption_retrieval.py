"""Image-text retrieval on captioned images in the layouts researchers have.

Two layouts are read:

- **Karpathy-split JSON** (COCO, Flickr30k: `dataset_coco.json`,
  `dataset_flickr30k.json`): `{"images": [{"filepath": "val2014",
  "filename": "COCO_val2014_....jpg", "split": "test", "sentences":
  [{"raw": "A man ..."}, ...]}, ...]}`. The images of one split are scored
  (the 5,000 / 1,000 test images by convention); an image's path is
  `images_root/filepath/filename` (`filepath` is optional, as in Flickr30k),
  `images_root` defaulting to the JSON file's folder. A sentence without
  `"raw"` is read from its `"tokens"`.
- **JSONL index**, this package's training-data format: one object a line
  with `"image"` (a path relative to `images_root`, by default the file's
  folder) and `"caption"` (a string or a list of strings); lines naming the
  same image add captions to it. A `"synthetic_caption"` (string or list)
  is scored as a second caption set.

Each caption set is scored both ways for CLS1 and CLS2 (`evaluate_retrieval`:
an image query is right at k when any of its captions is among the k most
similar texts). Images that do not decode are skipped, with their captions,
and counted.
"""

import dataclasses
import json
import os

import numpy as np

from keras_tips.evaluation.retrieval import evaluate_retrieval
from keras_tips.evaluation.zero_shot import CLS_TOKENS
from keras_tips.inference.embed import encode_image_files

# Caption sets of a JSONL index -> the prefix of their metrics.
CAPTION_KINDS = {"caption": "retrieval", "synthetic_caption": "retrieval_synthetic"}


@dataclasses.dataclass
class CaptionedImages:
    """Images and their captions.

    Attributes:
        paths: one path per image.
        captions: caption kind (`"caption"`, `"synthetic_caption"`) ->
            list of texts.
        caption_images: caption kind -> int64 array, the image index of
            each text.
    """

    paths: list
    captions: dict
    caption_images: dict

    def without_images(self, kept):
        """The same data restricted to the images at positions `kept` (a
        sorted int array), their captions re-indexed."""
        new_index = np.full(len(self.paths), -1, np.int64)
        new_index[kept] = np.arange(len(kept))
        captions, caption_images = {}, {}
        for kind, texts in self.captions.items():
            ids = new_index[self.caption_images[kind]]
            keep = ids >= 0
            captions[kind] = [t for t, k in zip(texts, keep) if k]
            caption_images[kind] = ids[keep]
        return CaptionedImages([self.paths[i] for i in kept], captions, caption_images)


def _caption_list(value, where):
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ValueError(f"{where}: a caption must be a string or a list of strings.")


def read_karpathy_json(path, split="test", images_root=None):
    """Reads one split of a Karpathy-split caption JSON (see the module
    docstring).

    Args:
        path: str. `dataset_coco.json`, `dataset_flickr30k.json`, ...
        split: str. The split scored (`"test"`, `"val"`, ...).
        images_root: optional str. The folder image paths are relative to
            (default: the JSON file's folder).

    Returns:
        A `CaptionedImages` with one caption kind, `"caption"`.
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON ({error}).") from error
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(
            f'{path} is not a Karpathy-split caption file: expected {{"images": '
            '[{"filename", "split", "sentences": [{"raw"}]}, ...]}.'
        )
    root = images_root or os.path.dirname(os.path.abspath(path))
    paths, texts, ids, splits = [], [], [], set()
    for number, image in enumerate(data["images"]):
        where = f"{path}, images[{number}]"
        if not isinstance(image, dict) or not isinstance(image.get("filename"), str):
            raise ValueError(f'{where}: an image needs a "filename".')
        splits.add(image.get("split"))
        if image.get("split") != split:
            continue
        sentences = image.get("sentences")
        if not isinstance(sentences, list) or not sentences:
            raise ValueError(f'{where}: an image needs a list of "sentences".')
        for sentence in sentences:
            if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
                text = sentence["raw"]
            elif isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
                text = " ".join(str(token) for token in sentence["tokens"])
            else:
                raise ValueError(f'{where}: a sentence needs "raw" text or "tokens".')
            texts.append(text.strip())
            ids.append(len(paths))
        paths.append(os.path.join(root, image.get("filepath") or "", image["filename"]))
    if not paths:
        raise ValueError(
            f"{path} has no images of split {split!r}; its splits are "
            f"{sorted(str(s) for s in splits)}."
        )
    return CaptionedImages(
        paths, {"caption": texts}, {"caption": np.asarray(ids, np.int64)}
    )


def read_caption_jsonl(path, images_root=None):
    """Reads a JSONL index of captioned images (see the module docstring).

    Args:
        path: str. The `.jsonl` file.
        images_root: optional str. The folder image paths are relative to
            (default: the file's folder).

    Returns:
        A `CaptionedImages`; its caption kinds are those the index has.
    """
    root = images_root or os.path.dirname(os.path.abspath(path))
    position, paths = {}, []
    captions = {kind: [] for kind in CAPTION_KINDS}
    caption_images = {kind: [] for kind in CAPTION_KINDS}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                item = json.loads(line)
            except ValueError as error:
                raise ValueError(f"{where} is not valid JSON ({error}).") from error
            if not isinstance(item, dict) or not isinstance(item.get("image"), str):
                raise ValueError(f'{where}: expected an object with an "image" path.')
            if item["image"] not in position:
                position[item["image"]] = len(paths)
                paths.append(os.path.join(root, item["image"]))
            for kind in CAPTION_KINDS:
                if item.get(kind) is not None:
                    texts = _caption_list(item[kind], where)
                    captions[kind] += texts
                    caption_images[kind] += [position[item["image"]]] * len(texts)
    if not paths:
        raise ValueError(f"{path} names no images.")
    kinds = [kind for kind in CAPTION_KINDS if captions[kind]]
    if not kinds:
        raise ValueError(f'{path} has no "caption" (nor "synthetic_caption").')
    return CaptionedImages(
        paths,
        {kind: captions[kind] for kind in kinds},
        {kind: np.asarray(caption_images[kind], np.int64) for kind in kinds},
    )


def read_captioned_images(path, split="test", images_root=None):
    """A Karpathy JSON (`.json`) or a JSONL index (`.jsonl`), by suffix."""
    if path.lower().endswith(".jsonl"):
        return read_caption_jsonl(path, images_root)
    if path.lower().endswith(".json"):
        return read_karpathy_json(path, split, images_root)
    raise ValueError(
        f"{path}: expected a Karpathy-split .json file or a .jsonl index."
    )


def evaluate_caption_retrieval(
    model,
    data,
    image_size=None,
    batch_size=32,
    ks=(1, 5, 10),
    progress=None,
):
    """Image -> text and text -> image recall@k of captioned images.

    Args:
        model: a `TIPSModel` (or any object with its `encode_images`,
            `encode_texts`, `patch_size` and `preprocessor`).
        data: a `CaptionedImages` (`read_captioned_images`).
        image_size: optional int or (height, width); default the preset's.
        batch_size: int. Images per forward pass.
        ks: the k of recall@k.
        progress: optional callable `(iterable, description, total) ->
            iterable`.

    Returns:
        A dict: `"metrics"` (`retrieval/cls_1/image_to_text/recall@1`, ...,
        `retrieval/cls_1/mean_recall`; `retrieval_synthetic/...` for
        synthetic captions), `"counts"` (images, captions per kind, skipped)
        and `"skipped"` (reasons of the unreadable files).

    Example:
    ```python
    data = read_captioned_images("dataset_flickr30k.json", images_root="flickr30k")
    results = evaluate_caption_retrieval(model, data)
    results["metrics"]["retrieval/cls_1/text_to_image/recall@1"]
    ```
    """
    features, kept, skipped = encode_image_files(
        model, data.paths, CLS_TOKENS, image_size, batch_size, progress
    )
    data = data.without_images(kept)
    metrics = {}
    counts = {"images": len(data.paths), "skipped": len(skipped)}
    for kind, texts in data.captions.items():
        counts[f"{kind}s"] = len(texts)
        if not texts:
            continue
        text_embeddings = model.encode_texts(texts)
        for token in CLS_TOKENS:
            scores = evaluate_retrieval(
                features[token], text_embeddings, data.caption_images[kind], ks
            )
            for key, value in scores.items():
                metrics[f"{CAPTION_KINDS[kind]}/{token}/{key}"] = value
    return {
        "metrics": metrics,
        "counts": counts,
        "skipped": [reason for _, reason in skipped],
    }
