"""Image augmentations: DINO-style multi-crop with a caption-paired crop, and
the evaluation transform.

All operations work on 8-bit PIL images, as the reference DINO recipe does
(torchvision's PIL path), and return float32 arrays in [0, 1]. Every random
draw comes from the `np.random.Generator` passed in, so an example's
augmentation is a pure function of the pipeline seed and its index.
"""

import dataclasses
import math
import re
import typing

import numpy as np
from PIL import Image
from PIL import ImageEnhance
from PIL import ImageFilter
from PIL import ImageOps

# Gaussian blur sigmas of the reference recipe are for 224 px crops; they are
# scaled with the crop size so a 56 px crop is blurred as much, relatively.
BLUR_REFERENCE_SIZE = 224
_LEFT_RIGHT = re.compile(r"\b(left|right|Left|Right|LEFT|RIGHT)\b")
_SWAPPED = {
    "left": "right",
    "right": "left",
    "Left": "Right",
    "Right": "Left",
    "LEFT": "RIGHT",
    "RIGHT": "LEFT",
}


def _check_range(name, values, upper=None):
    low, high = values
    if not 0 < low <= high or (upper is not None and high > upper):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(
            f"`{name}` must satisfy 0 < min <= max{bound}. Received: {values}"
        )


@dataclasses.dataclass(frozen=True)
class CropAugmentation:
    """How one kind of crop is cut and distorted.

    A crop is an Inception-style random resized crop (`scale`,
    `aspect_ratio`), then, each with its own probability, a horizontal flip,
    colour jitter (brightness, contrast, saturation and hue in a random
    order), grayscale, Gaussian blur and solarisation, in that order (DINO's
    order).

    Attributes:
        scale: (min, max) area fraction of the image the crop covers.
        aspect_ratio: (min, max) width / height of the crop (log-uniform).
        flip_probability: horizontal flip.
        color_jitter_probability: probability of colour jitter.
        brightness, contrast, saturation: jitter strengths (factor drawn
            uniformly in [1 - s, 1 + s]).
        hue: hue jitter, a shift in [-hue, hue] of the colour circle.
        grayscale_probability: random grayscale.
        blur_probability: Gaussian blur.
        blur_sigma: (min, max) blur sigma in pixels of a 224 px crop.
        solarize_probability: solarisation.
        solarize_threshold: int in [0, 255].

    Example:
    ```python
    captioned = CropAugmentation.resize_crop(scale=(0.9, 1.0), flip_probability=0.5)
    ```
    """

    scale: tuple = (0.32, 1.0)
    aspect_ratio: tuple = (3 / 4, 4 / 3)
    flip_probability: float = 0.5
    color_jitter_probability: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_probability: float = 0.2
    blur_probability: float = 0.0
    blur_sigma: tuple = (0.1, 2.0)
    solarize_probability: float = 0.0
    solarize_threshold: int = 128

    def __post_init__(self):
        for name in ("scale", "aspect_ratio", "blur_sigma"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                raise ValueError(
                    f"`{name}` must be a (min, max) pair. Received: {value!r}"
                )
            object.__setattr__(self, name, tuple(float(v) for v in value))
        _check_range("scale", self.scale, upper=1.0)
        _check_range("aspect_ratio", self.aspect_ratio)
        _check_range("blur_sigma", self.blur_sigma)
        for field in dataclasses.fields(self):
            if field.name.endswith("probability"):
                value = getattr(self, field.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(
                        f"`{field.name}` must be in [0, 1]. Received: {value}"
                    )
        if not 0 <= self.solarize_threshold <= 255:
            raise ValueError(
                "`solarize_threshold` must be in [0, 255]. Received: "
                f"{self.solarize_threshold}"
            )

    @classmethod
    def resize_crop(
        cls, scale=(1.0, 1.0), aspect_ratio=(3 / 4, 4 / 3), flip_probability=0.0
    ):
        """A crop with no photometric change: cut, resize, maybe flip."""
        return cls(
            scale=scale,
            aspect_ratio=aspect_ratio,
            flip_probability=flip_probability,
            color_jitter_probability=0.0,
            grayscale_probability=0.0,
            blur_probability=0.0,
            solarize_probability=0.0,
        )

    @property
    def photometric(self):
        """Whether the crop's colours or sharpness may change."""
        return (
            self.color_jitter_probability > 0
            or self.grayscale_probability > 0
            or self.blur_probability > 0
            or self.solarize_probability > 0
        )


# DINOv2's crops (`dinov2/data/augmentations.py`). DINOv2 has two global
# crops, one always blurred and one blurred with probability 0.1 and
# solarised with 0.2; the single global crop here uses their means.
DINO_GLOBAL_CROP = CropAugmentation(
    scale=(0.32, 1.0), blur_probability=0.55, solarize_probability=0.1
)
DINO_LOCAL_CROP = CropAugmentation(scale=(0.05, 0.32), blur_probability=0.5)
# The crop paired with the captions: open_clip's training crop (a random
# resized crop of 90-100 % of the image, no colour change), plus a flip whose
# left/right is swapped in the captions (`swap_left_right_on_flip`), so
# "red", "grayscale photo" and "on the left" stay true of the pixels.
CAPTIONED_CROP = CropAugmentation.resize_crop(
    scale=(0.9, 1.0), flip_probability=0.5
)


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Augmentation of each kind of crop.

    Three kinds of crop are made from each image, each with its own
    `CropAugmentation`:

    * `contrastive_crop`: the view the contrastive loss pairs with the
      captions (batch key `"contrastive_images"`, at the global crop's
      size). No photometric change by default, so that captions naming
      colours, objects or positions stay true. None (the default, so that
      a pipeline configured before this view existed makes the same
      batches): no separate view; the contrastive loss uses the global
      crop (the TIPS paper's single global crop) and the captions follow
      the global crop's flip. `recipes/tips_b14_webli.py` sets
      `CAPTIONED_CROP`.
    * `global_crop`: the self-distillation teacher's view and the masked
      student's view (`"global_images"`): DINO's photometric stack.
    * `local_crop`: the student's small views for self-distillation
      (`"local_images"`): DINO's photometric stack.

    Attributes:
        contrastive_crop: `CropAugmentation` or None.
        global_crop: `CropAugmentation`.
        local_crop: `CropAugmentation`.
        swap_left_right_on_flip: bool. When the crop paired with the captions
            is flipped, "left" and "right" are swapped in its captions.

    Example:
    ```python
    config = AugmentationConfig(
        local_crop=dataclasses.replace(DINO_LOCAL_CROP, scale=(0.1, 0.4))
    )
    ```
    """

    contrastive_crop: CropAugmentation | None = None
    global_crop: CropAugmentation = DINO_GLOBAL_CROP
    local_crop: CropAugmentation = DINO_LOCAL_CROP
    swap_left_right_on_flip: bool = True

    def __post_init__(self):
        # Nested settings may arrive as dicts (JSON, `--set` literals).
        for name in ("contrastive_crop", "global_crop", "local_crop"):
            value = getattr(self, name)
            if value is None and name == "contrastive_crop":
                continue
            if isinstance(value, dict):
                object.__setattr__(self, name, CropAugmentation(**value))
            elif not isinstance(value, CropAugmentation):
                raise ValueError(
                    f"`{name}` must be a CropAugmentation (or a dict of its "
                    f"fields){' or None' if name == 'contrastive_crop' else ''}"
                    f". Received: {value!r}"
                )

    @classmethod
    def none(cls, separate_contrastive_crop=True):
        """Crops and resizes only: no flip, colour, blur or solarize (each
        kind keeps its default scale)."""
        return cls(
            contrastive_crop=(
                _without_changes(CAPTIONED_CROP)
                if separate_contrastive_crop
                else None
            ),
            global_crop=_without_changes(DINO_GLOBAL_CROP),
            local_crop=_without_changes(DINO_LOCAL_CROP),
        )


def _without_changes(crop):
    return CropAugmentation.resize_crop(crop.scale, crop.aspect_ratio)


def sample_crop_box(height, width, scale, aspect_ratio, rng, attempts=10):
    """Samples a random-resized-crop box (Inception-style).

    Area fraction uniform in `scale`, aspect ratio log-uniform in
    `aspect_ratio`; after `attempts` failures the largest centred crop with an
    aspect ratio in range is used.

    Returns:
        `(left, top, crop_width, crop_height)` in pixels.
    """
    area = height * width
    log_ratio = (math.log(aspect_ratio[0]), math.log(aspect_ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        ratio = math.exp(rng.uniform(*log_ratio))
        crop_width = int(round(math.sqrt(target_area * ratio)))
        crop_height = int(round(math.sqrt(target_area / ratio)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return left, top, crop_width, crop_height
    in_ratio = width / height
    if in_ratio < aspect_ratio[0]:
        crop_width = width
        crop_height = int(round(width / aspect_ratio[0]))
    elif in_ratio > aspect_ratio[1]:
        crop_height = height
        crop_width = int(round(height * aspect_ratio[1]))
    else:
        crop_width, crop_height = width, height
    crop_width = max(1, min(crop_width, width))
    crop_height = max(1, min(crop_height, height))
    return (
        (width - crop_width) // 2,
        (height - crop_height) // 2,
        crop_width,
        crop_height,
    )


def adjust_hue(image, shift):
    """Rotates the hues of an RGB PIL image by `shift` (fraction of a turn).

    A rotation of the colour cube about its grey axis: one 3x3 colour matrix
    applied by PIL in C, several times faster than a round trip through HSV
    on small crops. Grays are unchanged and +1/3 turns red into green, as an
    HSV hue shift does; saturated colours can leave the gamut slightly and
    are clipped.
    """
    angle = 2 * math.pi * shift
    cos, sin = math.cos(angle), math.sin(angle)
    third = (1 - cos) / 3
    cross = sin / math.sqrt(3)
    matrix = (
        cos + third, third - cross, third + cross, 0,
        third + cross, cos + third, third - cross, 0,
        third - cross, third + cross, cos + third, 0,
    )  # fmt: skip
    return image.convert("RGB", matrix)


def color_jitter(image, config, rng):
    """Brightness, contrast, saturation and hue jitter, in a random order
    (strengths from `config`, a `CropAugmentation`)."""
    operations = []
    if config.brightness > 0:
        factor = rng.uniform(
            max(0.0, 1 - config.brightness), 1 + config.brightness
        )
        operations.append(
            lambda im, f=factor: ImageEnhance.Brightness(im).enhance(f)
        )
    if config.contrast > 0:
        factor = rng.uniform(max(0.0, 1 - config.contrast), 1 + config.contrast)
        operations.append(
            lambda im, f=factor: ImageEnhance.Contrast(im).enhance(f)
        )
    if config.saturation > 0:
        factor = rng.uniform(
            max(0.0, 1 - config.saturation), 1 + config.saturation
        )
        operations.append(
            lambda im, f=factor: ImageEnhance.Color(im).enhance(f)
        )
    if config.hue > 0:
        shift = rng.uniform(-config.hue, config.hue)
        operations.append(lambda im, s=shift: adjust_hue(im, s))
    for index in rng.permutation(len(operations)):
        image = operations[index](image)
    return image


def to_float_array(image):
    """uint8 PIL image or array -> float32 array in [0, 1]."""
    return np.asarray(image, dtype=np.float32) * np.float32(1.0 / 255.0)


def augment_crop(image, box, size, crop, rng):
    """Cuts `box`, resizes it to `size` and applies `crop`'s augmentations.

    Each augmentation's uniform draw is made whether or not its probability
    is zero, so an example's other draws do not depend on it.

    Args:
        image: RGB PIL image.
        box: `(left, top, width, height)`.
        size: int. Output side.
        crop: `CropAugmentation`.
        rng: `np.random.Generator`.

    Returns:
        `(pixels, flipped)`: float32 (size, size, 3) in [0, 1] and whether it
        was flipped horizontally.
    """
    left, top, width, height = box
    pixels = image.resize(
        (size, size),
        Image.Resampling.BICUBIC,
        box=(left, top, left + width, top + height),
    )
    flipped = bool(rng.random() < crop.flip_probability)
    if flipped:
        pixels = pixels.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < crop.color_jitter_probability:
        pixels = color_jitter(pixels, crop, rng)
    if rng.random() < crop.grayscale_probability:
        pixels = pixels.convert("L").convert("RGB")
    if rng.random() < crop.blur_probability:
        sigma = rng.uniform(*crop.blur_sigma) * size / BLUR_REFERENCE_SIZE
        pixels = pixels.filter(ImageFilter.GaussianBlur(radius=sigma))
    if rng.random() < crop.solarize_probability:
        pixels = ImageOps.solarize(pixels, threshold=crop.solarize_threshold)
    return to_float_array(pixels), flipped


def random_crop(image, size, crop, rng):
    """A random resized crop of `image` with `crop`'s augmentations.

    Returns:
        `(pixels, flipped)` as `augment_crop`.
    """
    width, height = image.size
    box = sample_crop_box(height, width, crop.scale, crop.aspect_ratio, rng)
    return augment_crop(image, box, size, crop, rng)


class MultiCrop(typing.NamedTuple):
    """The crops of one image (see `MultiCropTransform`).

    Attributes:
        global_crop: float32 (G, G, 3) in [0, 1].
        local_crops: float32 (N, S, S, 3).
        contrastive_crop: float32 (G, G, 3), or None when the contrastive
            loss uses the global crop.
        captions_flipped: bool. Whether the crop paired with the captions
            (the contrastive crop, else the global crop) was flipped.
    """

    global_crop: np.ndarray
    local_crops: np.ndarray
    contrastive_crop: np.ndarray | None
    captions_flipped: bool


class MultiCropTransform:
    """DINO-style multi-crop, and the crop paired with the captions.

    One global crop, `local_crop_count` local crops and, when
    `config.contrastive_crop` is set, a separate contrastive crop of the
    global crop's size, each augmented as its kind says. The random draws
    come in that order: global, locals, contrastive.

    Args:
        global_size: int. Side of the global (and contrastive) crop.
        local_crop_count: int. Number of local crops (0 for none).
        local_size: int. Side of the local crops.
        config: `AugmentationConfig`.

    Example:
    ```python
    transform = MultiCropTransform(224, 6, 98)
    crops = transform(rgb, np.random.default_rng(0))
    crops.global_crop.shape, crops.local_crops.shape  # (224, 224, 3), (6, 98, 98, 3)
    crops.contrastive_crop.shape  # (224, 224, 3)
    ```
    """

    def __init__(
        self, global_size, local_crop_count=0, local_size=98, config=None
    ):
        self.global_size = int(global_size)
        self.local_crop_count = int(local_crop_count)
        self.local_size = int(local_size)
        self.config = config or AugmentationConfig()

    def __call__(self, image, rng):
        """Augments one image.

        Args:
            image: uint8 (H, W, 3) array or RGB PIL image.
            rng: `np.random.Generator`.

        Returns:
            A `MultiCrop`.
        """
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
        config = self.config
        global_crop, global_flipped = random_crop(
            image, self.global_size, config.global_crop, rng
        )
        local_crops = np.empty(
            (self.local_crop_count, self.local_size, self.local_size, 3),
            np.float32,
        )
        for index in range(self.local_crop_count):
            local_crops[index], _ = random_crop(
                image, self.local_size, config.local_crop, rng
            )
        if config.contrastive_crop is None:
            return MultiCrop(global_crop, local_crops, None, global_flipped)
        contrastive_crop, flipped = random_crop(
            image, self.global_size, config.contrastive_crop, rng
        )
        return MultiCrop(global_crop, local_crops, contrastive_crop, flipped)


class EvalTransform:
    """Resize and centre crop only (evaluation / deterministic inputs).

    The short side is resized to `image_size / crop_fraction`, then the
    centre `image_size` square is cut.

    Args:
        image_size: int. Output side.
        crop_fraction: float in (0, 1]. 1.0 keeps the whole short side;
            0.875 is the classic ImageNet evaluation crop.

    Example:
    ```python
    image = EvalTransform(224)(rgb)  # float32 (224, 224, 3) in [0, 1]
    ```
    """

    def __init__(self, image_size, crop_fraction=1.0):
        if not 0 < crop_fraction <= 1:
            raise ValueError(
                f"`crop_fraction` must be in (0, 1]. Received: {crop_fraction}"
            )
        self.image_size = int(image_size)
        self.crop_fraction = float(crop_fraction)

    def __call__(self, image):
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
        width, height = image.size
        # The centre square of side short_side * crop_fraction, resized to
        # image_size, is the same as resizing then cropping, in one resample.
        side = min(width, height) * self.crop_fraction
        left = (width - side) / 2
        top = (height - side) / 2
        crop = image.resize(
            (self.image_size, self.image_size),
            Image.Resampling.BICUBIC,
            box=(left, top, left + side, top + side),
        )
        return to_float_array(crop)


def swap_left_right(text):
    """Swaps the words "left" and "right" (for horizontally flipped images)."""
    return _LEFT_RIGHT.sub(lambda match: _SWAPPED[match.group(0)], text)
