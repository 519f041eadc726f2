"""Record -> training example: the per-example step of the pipeline.

It runs in grain's worker processes when the pipeline has workers. A usable
record becomes

```
"global_images":     float32 (G, G, 3) in [0, 1]
"local_images":      float32 (N_local, S, S, 3)   (only when N_local > 0)
"patch_mask":        bool ((G // patch_size) ** 2), True = masked patch
"web_caption", "synthetic_caption": str ("" when unusable)
"has_web", "has_synthetic": bool
"skip": False, "issues": problem kinds met (converted, not fatal), "key"
```

and a bad one a small `{"skip": True, "issues": ..., "key": ...}` that the
batcher counts and drops.

A record's synthetic caption may be a list: the same image described at
several granularities. One usable entry is drawn per example with the
element's own generator (grain's `random_map` derives it from the pipeline
seed and the element's position, which counts epochs), so the draw changes
from epoch to epoch, is the same in every run with the same seed, and
resumes exactly from a saved iterator state. It is drawn after the crops
and the patch mask, and only when there is a choice, so a record with one
caption makes the very same example as before lists existed.
"""

import grain
import numpy as np

from keras_tips.data import stats as stats_lib
from keras_tips.data.decoding import ImageDecodeError
from keras_tips.data.decoding import clean_caption
from keras_tips.data.decoding import clean_caption_choices
from keras_tips.data.decoding import decode_image
from keras_tips.data.masking import PatchMasker
from keras_tips.data.transforms import EvalTransform
from keras_tips.data.transforms import MultiCropTransform
from keras_tips.data.transforms import swap_left_right


def draft_short_side(config):
    """Smallest short side a JPEG may be decoded at without losing detail."""
    if not config.training:
        return int(
            np.ceil(config.global_image_size / config.eval_crop_fraction)
        )
    augmentation = config.augmentation
    needed = config.global_image_size / np.sqrt(
        augmentation.global_crop_scale[0]
    )
    if config.local_crop_count:
        needed = max(
            needed,
            config.local_image_size / np.sqrt(augmentation.local_crop_scale[0]),
        )
    return int(np.ceil(needed))


def draw_caption(choices, rng):
    """One of the usable captions of a record: "" for none, the only one
    without using `rng`, otherwise one drawn uniformly with `rng`.

    Args:
        choices: list of cleaned captions (see `clean_caption_choices`).
        rng: `np.random.Generator`, the element's own.
    """
    if len(choices) < 2:
        return choices[0] if choices else ""
    return choices[int(rng.integers(len(choices)))]


def skipped_example(kinds, key):
    """The stand-in of a record that cannot be used: its problem kinds."""
    return {"skip": True, "issues": tuple(kinds), "key": key}


class PretrainingExampleTransform(grain.transforms.RandomMap):
    """Record -> training example (see the module docstring).

    Decodes and checks the image and captions, then makes the crops and the
    patch mask. Bad records become small "skip" examples that only carry
    their problem kinds, to be counted and dropped by the batch step.

    Args:
        config: a complete `PipelineConfig`.

    Example:
    ```python
    transform = PretrainingExampleTransform(config)
    example = transform.random_map(record, np.random.default_rng(0))
    ```
    """

    def __init__(self, config):
        config.check_complete()
        self.config = config
        if config.training:
            self.crop_transform = MultiCropTransform(
                config.global_image_size,
                config.local_crop_count,
                config.local_image_size,
                config.augmentation,
            )
        else:
            self.crop_transform = EvalTransform(
                config.global_image_size, config.eval_crop_fraction
            )
        self.masker = PatchMasker(config.patch_grid_size, config.mask)
        self.draft_short_side = draft_short_side(config)

    def random_map(self, record, rng):
        config = self.config
        key = record.get("key", "")
        if record.get("error"):
            return skipped_example([record["error"]], key)
        image = record.get("image")
        if image is None:
            return skipped_example([stats_lib.MISSING_FILE], key)
        try:
            rgb, issues = decode_image(
                image, config.max_image_pixels, self.draft_short_side
            )
        except ImageDecodeError as error:
            return skipped_example([error.kind], key)
        issues = list(issues)
        web_caption, problem = clean_caption(
            record.get("caption"), config.max_caption_chars
        )
        if problem:
            issues.append(stats_lib.caption_kind("web", problem))
        synthetic_choices, problems = clean_caption_choices(
            record.get("synthetic_caption"), config.max_caption_chars
        )
        issues.extend(stats_lib.caption_kind("synthetic", p) for p in problems)
        if config.require_caption and not (web_caption or synthetic_choices):
            return skipped_example(issues + [stats_lib.NO_CAPTION], key)

        flipped = False
        if config.training:
            global_image, local_images, flipped = self.crop_transform(rgb, rng)
            patch_mask = self.masker(rng)
        else:
            global_image = self.crop_transform(rgb)
            local_images = None
            patch_mask = np.zeros(config.num_patches, dtype=bool)
        captions = {
            "web": web_caption,
            "synthetic": draw_caption(synthetic_choices, rng),
        }
        if flipped and config.augmentation.swap_left_right_on_flip:
            captions = {k: swap_left_right(v) for k, v in captions.items()}
        example = {
            "skip": False,
            "issues": tuple(issues),
            "key": key,
            "global_images": global_image,
            "patch_mask": patch_mask,
            "web_caption": captions["web"],
            "synthetic_caption": captions["synthetic"],
            "has_web": bool(captions["web"]),
            "has_synthetic": bool(captions["synthetic"]),
        }
        if config.effective_local_crop_count:
            example["local_images"] = local_images
        return example
