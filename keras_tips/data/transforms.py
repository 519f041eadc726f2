"""Image augmentations: DINO-style multi-crop, and the evaluation transform.

All operations work on 8-bit PIL images, as the reference DINO recipe does
(torchvision's PIL path), and return float32 arrays in [0, 1]. Every random
draw comes from the `np.random.Generator` passed in, so an example's
augmentation is a pure function of the pipeline seed and its index.
"""

import dataclasses
import math
import re

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


@dataclasses.dataclass(frozen=True)
class AugmentationConfig:
    """Probabilities and strengths of the multi-crop augmentations.

    Defaults follow DINO / DINOv2 (single global crop: its blur and solarize
    probabilities are the mean of DINO's two global crops).

    Attributes:
        global_crop_scale: (min, max) area fraction of a global crop.
        local_crop_scale: (min, max) area fraction of a local crop.
        crop_aspect_ratio: (min, max) width / height of crops (log-uniform).
        flip_probability: horizontal flip.
        color_jitter_probability: probability of colour jitter.
        brightness, contrast, saturation: jitter strengths (factor drawn
            uniformly in [1 - s, 1 + s]).
        hue: hue jitter, a shift in [-hue, hue] of the colour circle.
        grayscale_probability: random grayscale.
        global_blur_probability, local_blur_probability: Gaussian blur.
        blur_sigma: (min, max) blur sigma in pixels of a 224 px crop.
        global_solarize_probability, local_solarize_probability: solarize.
        solarize_threshold: int in [0, 255].
        swap_left_right_on_flip: bool. When the global crop is flipped,
            "left" and "right" are swapped in its captions so spatial
            captions stay true.
    """

    global_crop_scale: tuple = (0.32, 1.0)
    local_crop_scale: tuple = (0.05, 0.32)
    crop_aspect_ratio: tuple = (3 / 4, 4 / 3)
    flip_probability: float = 0.5
    color_jitter_probability: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_probability: float = 0.2
    global_blur_probability: float = 0.55
    local_blur_probability: float = 0.5
    blur_sigma: tuple = (0.1, 2.0)
    global_solarize_probability: float = 0.1
    local_solarize_probability: float = 0.0
    solarize_threshold: int = 128
    swap_left_right_on_flip: bool = True

    def __post_init__(self):
        for name in ("global_crop_scale", "local_crop_scale"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(
                    f"`{name}` must satisfy 0 < min <= max <= 1. "
                    f"Received: {getattr(self, name)}"
                )
        low, high = self.crop_aspect_ratio
        if not 0 < low <= high:
            raise ValueError(
                f"`crop_aspect_ratio` must satisfy 0 < min <= max. Received: "
                f"{self.crop_aspect_ratio}"
            )
        for field in dataclasses.fields(self):
            if field.name.endswith("probability"):
                value = getattr(self, field.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(
                        f"`{field.name}` must be in [0, 1]. Received: {value}"
                    )

    @classmethod
    def none(cls):
        """Crops and resizes only: no flip, colour, blur or solarize."""
        return cls(
            flip_probability=0.0,
            color_jitter_probability=0.0,
            grayscale_probability=0.0,
            global_blur_probability=0.0,
            local_blur_probability=0.0,
            global_solarize_probability=0.0,
            local_solarize_probability=0.0,
        )


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
    """Brightness, contrast, saturation and hue jitter, in a random order."""
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


def augment_crop(
    image, box, size, config, blur_probability, solarize_probability, rng
):
    """Crops `box`, resizes to `size` and applies the photometric augmentations.

    Args:
        image: RGB PIL image.
        box: `(left, top, width, height)`.
        size: int. Output side.
        config: `AugmentationConfig`.
        blur_probability, solarize_probability: floats for this crop type.
        rng: `np.random.Generator`.

    Returns:
        `(crop, flipped)`: float32 (size, size, 3) in [0, 1] and whether it
        was flipped horizontally.
    """
    left, top, width, height = box
    crop = image.resize(
        (size, size),
        Image.Resampling.BICUBIC,
        box=(left, top, left + width, top + height),
    )
    flipped = bool(rng.random() < config.flip_probability)
    if flipped:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < config.color_jitter_probability:
        crop = color_jitter(crop, config, rng)
    if rng.random() < config.grayscale_probability:
        crop = crop.convert("L").convert("RGB")
    if rng.random() < blur_probability:
        sigma = rng.uniform(*config.blur_sigma) * size / BLUR_REFERENCE_SIZE
        crop = crop.filter(ImageFilter.GaussianBlur(radius=sigma))
    if rng.random() < solarize_probability:
        crop = ImageOps.solarize(crop, threshold=config.solarize_threshold)
    return to_float_array(crop), flipped


class MultiCropTransform:
    """DINO-style multi-crop: one global crop and `local_crop_count` locals.

    Args:
        global_size: int. Side of the global crop.
        local_crop_count: int. Number of local crops (0 for none).
        local_size: int. Side of the local crops.
        config: `AugmentationConfig`.

    Example:
    ```python
    transform = MultiCropTransform(224, 6, 98)
    global_crop, local_crops, flipped = transform(rgb, np.random.default_rng(0))
    # (224, 224, 3), (6, 98, 98, 3) float32 in [0, 1]
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
            `(global_crop, local_crops, global_flipped)`: float32
            (G, G, 3), float32 (N, S, S, 3) and a bool.
        """
        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
        config = self.config
        width, height = image.size
        box = sample_crop_box(
            height,
            width,
            config.global_crop_scale,
            config.crop_aspect_ratio,
            rng,
        )
        global_crop, flipped = augment_crop(
            image,
            box,
            self.global_size,
            config,
            config.global_blur_probability,
            config.global_solarize_probability,
            rng,
        )
        local_crops = np.empty(
            (self.local_crop_count, self.local_size, self.local_size, 3),
            np.float32,
        )
        for index in range(self.local_crop_count):
            box = sample_crop_box(
                height,
                width,
                config.local_crop_scale,
                config.crop_aspect_ratio,
                rng,
            )
            local_crops[index], _ = augment_crop(
                image,
                box,
                self.local_size,
                config,
                config.local_blur_probability,
                config.local_solarize_probability,
                rng,
            )
        return global_crop, local_crops, flipped


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
