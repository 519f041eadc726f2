"""A procedural image-text dataset of coloured shapes, with dense labels.

Each scene has 1-4 shapes (circle, square, triangle, star, cross, diamond)
of distinct colours and two sizes, drawn back to front on a noisy
background, so later shapes hide parts of earlier ones. Every example gives:

- `image`: uint8 (H, W, 3);
- `web_caption`: a short noisy caption, like alt-text: one object named,
  sometimes with a wrong colour or shape, sometimes generic ("a picture");
- `synthetic_caption`: every visible object with its size, colour, the
  region of a 3x3 grid it is in and what it is partly behind, e.g.
  "two shapes: a large blue circle in the center; a small red triangle in
  the top left, partly behind the blue circle.";
- `synthetic_captions`: the synthetic caption at three granularities,
  `(phrase, sentence, full)`: the objects' colours and shapes ("a blue
  circle and a red triangle"), one sentence adding sizes and regions
  ("a large blue circle in the center and a small red triangle in the top
  left."), and `synthetic_caption` itself;
- `class_mask`: int32 (H, W), 0 = background, 1..C = `SHAPE_CLASSES[c - 1]`;
- `colour_mask`: int32 (H, W), 0 = background, 1..6 =
  `COLOUR_NAMES[c - 1]` (the colour of the visible object);
- `instance_mask`: int32 (H, W), 0 = background, k = `objects[k - 1]`;
- `depth`: float32 (H, W), background 1.0, nearer objects smaller;
- `objects`: one dict per object, in drawing order (back to front): shape,
  class_id, colour, size, center, extent, bbox (of the whole shape, x0, y0,
  x1, y1), depth, visible_pixels, visible_fraction, region, occluded_by
  (indices of the objects visible over part of it);
- `label`: zero-shot class index (into `SHAPE_CLASSES`) of the object with
  the largest visible area.

Consistency rules: an object is only kept if at least
`min_visible_fraction` of it stays visible after the later objects are
drawn, so every object in the masks is named in the synthetic caption and
every named object is visible. Its region is the 3x3 cell holding most of
its visible pixels. Example `i` of a split is a pure function of
`(seed, split, i)`.
"""

import io
import json
import os

import numpy as np
from PIL import Image
from PIL import ImageDraw

from keras_tips.data.records import make_record

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (45, 85, 225),
    "yellow": (235, 205, 35),
    "purple": (140, 60, 190),
    "orange": (245, 135, 25),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = ("small", "large")
# Side of a shape's bounding box as a fraction of the image side.
SIZE_FRACTIONS = {"small": (0.18, 0.26), "large": (0.36, 0.48)}
BACKGROUND_COLOURS = (
    (30, 30, 30),
    (90, 90, 90),
    (170, 170, 170),
    (225, 220, 205),
)
REGION_NAMES = (
    ("top left", "top middle", "top right"),
    ("middle left", "center", "middle right"),
    ("bottom left", "bottom middle", "bottom right"),
)
REGIONS = tuple(name for row in REGION_NAMES for name in row)
SPLITS = {"train": 0, "validation": 1, "test": 2}
ZERO_SHOT_TEMPLATES = (
    "a {}.",
    "a picture of a {}.",
    "a {} shape.",
    "a drawing of a {}.",
    "shapes with a {}.",
)
GENERIC_CAPTIONS = (
    "a picture",
    "shapes",
    "some shapes",
    "an image",
    "colorful shapes",
    "a drawing",
    "abstract art",
    "geometry",
)
_COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
_NOISE_LEVEL = 8
_COLOUR_JITTER = 12


def zero_shot_prompts(class_name):
    """The zero-shot prompts of one class, from `ZERO_SHOT_TEMPLATES`."""
    return [template.format(class_name) for template in ZERO_SHOT_TEMPLATES]


def _star(cx, cy, radius):
    angles = np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, radius, 0.42 * radius)
    # Centred on the star's bounding box rather than on its centre of points,
    # which sits above it.
    cy = cy + 0.1 * radius
    return [
        (cx + r * np.cos(a), cy - r * np.sin(a)) for r, a in zip(radii, angles)
    ]


def _cross(cx, cy, half):
    arm = half / 3
    return [
        (cx - arm, cy - half), (cx + arm, cy - half), (cx + arm, cy - arm),
        (cx + half, cy - arm), (cx + half, cy + arm), (cx + arm, cy + arm),
        (cx + arm, cy + half), (cx - arm, cy + half), (cx - arm, cy + arm),
        (cx - half, cy + arm), (cx - half, cy - arm), (cx - arm, cy - arm),
    ]  # fmt: skip


def draw_shape_mask(shape, cx, cy, extent, image_size):
    """Rasterizes one shape into a bool mask (image_size, image_size).

    Args:
        shape: one of `SHAPE_CLASSES`.
        cx, cy: centre in pixels.
        extent: side of the bounding box in pixels.
        image_size: int.
    """
    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    half = extent / 2
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "circle":
        draw.ellipse(box, fill=1)
    elif shape == "square":
        draw.rectangle(box, fill=1)
    elif shape == "triangle":
        draw.polygon(
            [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)],
            fill=1,
        )
    elif shape == "star":
        draw.polygon(_star(cx, cy, half), fill=1)
    elif shape == "cross":
        draw.polygon(_cross(cx, cy, half), fill=1)
    elif shape == "diamond":
        draw.polygon(
            [
                (cx, cy - half),
                (cx + half, cy),
                (cx, cy + half),
                (cx - half, cy),
            ],
            fill=1,
        )
    else:
        raise ValueError(
            f"Unknown shape {shape!r}. Expected one of {SHAPE_CLASSES}."
        )
    return np.asarray(canvas, dtype=bool)


def region_cell_counts(mask):
    """Pixel counts of `mask` in each cell of a 3x3 grid, (3, 3) int."""
    height, width = mask.shape
    rows = [0, height // 3, (2 * height) // 3, height]
    cols = [0, width // 3, (2 * width) // 3, width]
    row_sums = np.add.reduceat(mask.astype(np.int32), rows[:3], axis=0)
    return np.add.reduceat(row_sums, cols[:3], axis=1)


def region_of(mask):
    """Name of the 3x3 cell holding most pixels of `mask` (ties: first)."""
    cell = int(np.argmax(region_cell_counts(mask)))
    return REGIONS[cell]


def describe_object(obj, objects):
    """Synthetic-caption phrase of one object."""
    article = "an" if obj["size"][0] in "aeiou" else "a"
    phrase = (
        f"{article} {obj['size']} {obj['colour']} {obj['shape']} "
        f"in the {obj['region']}"
    )
    if obj["occluded_by"]:
        names = [
            f"the {objects[k]['colour']} {objects[k]['shape']}"
            for k in obj["occluded_by"]
        ]
        phrase += ", partly behind " + " and ".join(names)
    return phrase


def _most_visible_first(objects):
    return sorted(
        range(len(objects)), key=lambda k: (-objects[k]["visible_pixels"], -k)
    )


def synthetic_caption(objects):
    """Describes every object, most visible first (truncation drops the least).

    Args:
        objects: the object dicts of a scene.
    """
    phrases = [
        describe_object(objects[k], objects) for k in _most_visible_first(objects)
    ]
    if len(objects) == 1:
        return phrases[0] + "."
    return f"{_COUNT_WORDS[len(objects)]} shapes: " + "; ".join(phrases) + "."


def synthetic_captions(objects):
    """The synthetic caption at three granularities, most visible first.

    Args:
        objects: the object dicts of a scene.

    Returns:
        `(phrase, sentence, full)`: colours and shapes only ("a blue circle
        and a red triangle"); one sentence with sizes and regions ("a large
        blue circle in the center and a small red triangle in the top
        left."); and `synthetic_caption(objects)`.
    """
    order = _most_visible_first(objects)
    named = [
        f"a {objects[k]['colour']} {objects[k]['shape']}" for k in order
    ]
    placed = [
        f"{'an' if objects[k]['size'][0] in 'aeiou' else 'a'} "
        f"{objects[k]['size']} {objects[k]['colour']} {objects[k]['shape']} "
        f"in the {objects[k]['region']}"
        for k in order
    ]
    return (
        _join_with_and(named),
        _join_with_and(placed) + ".",
        synthetic_caption(objects),
    )


def _join_with_and(parts):
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def web_caption(objects, main_object, rng):
    """A short, noisy alt-text-like caption."""
    draw = rng.random()
    if draw < 0.15:
        return str(rng.choice(GENERIC_CAPTIONS))
    obj = (
        objects[main_object]
        if rng.random() < 0.75
        else objects[rng.integers(len(objects))]
    )
    colour, shape = obj["colour"], obj["shape"]
    if draw < 0.3:
        # A wrong caption: the colour or the shape is not the object's.
        if rng.random() < 0.5:
            colour = str(rng.choice([c for c in COLOUR_NAMES if c != colour]))
        else:
            shape = str(rng.choice([s for s in SHAPE_CLASSES if s != shape]))
    templates = (
        "{colour} {shape}",
        "a {colour} {shape}",
        "a {shape}",
        "{shape}",
        "a picture of a {shape}",
        "{colour} {shape} image",
        "a {colour} {shape} on a plain background",
    )
    caption = str(rng.choice(templates)).format(colour=colour, shape=shape)
    if len(objects) > 1 and rng.random() < 0.2:
        other = objects[(objects.index(obj) + 1) % len(objects)]
        caption += f" and a {other['shape']}"
    return caption


class ShapesDataset:
    """Procedural shapes scenes as a grain `RandomAccessDataSource`.

    Args:
        split: "train", "validation" or "test" (disjoint random streams).
        num_examples: int. Length of the split.
        image_size: int. Image side in pixels (56-112 is typical).
        seed: int. Base seed; with `split` and the index it fixes an example.
        max_objects: int in [1, 6]. Most shapes per scene.
        min_visible_fraction: float. Least visible fraction of every kept
            object (see the module docstring).
        object_scale: float. Multiplies the side of every shape (the
            `SIZE_FRACTIONS` of the image side); above 1 makes objects span
            more patches of a ViT/14, so that patch-level probes can see
            them.

    Example:
    ```python
    dataset = ShapesDataset("train", num_examples=10_000, image_size=64)
    example = dataset[0]
    example["synthetic_caption"], example["class_mask"].shape
    source = dataset.image_text_source()  # for the pretraining pipeline
    ```
    """

    class_names = SHAPE_CLASSES

    def __init__(
        self,
        split="train",
        num_examples=10_000,
        image_size=64,
        seed=0,
        max_objects=4,
        min_visible_fraction=0.35,
        object_scale=1.0,
    ):
        if split not in SPLITS:
            raise ValueError(
                f"`split` must be one of {tuple(SPLITS)}. Received: {split!r}"
            )
        if not 1 <= max_objects <= len(COLOURS):
            raise ValueError(
                f"`max_objects` must be in [1, {len(COLOURS)}]. "
                f"Received: {max_objects}"
            )
        if image_size < 16:
            raise ValueError(
                f"`image_size` must be >= 16. Received: {image_size}"
            )
        largest = max(high for _, high in SIZE_FRACTIONS.values())
        if not 0 < object_scale * largest <= 1:
            raise ValueError(
                "`object_scale` must be > 0 and keep the largest shape inside "
                f"the image (at most {1 / largest:.3f}). Received: "
                f"{object_scale}"
            )
        self.split = split
        self.num_examples = int(num_examples)
        self.image_size = int(image_size)
        self.seed = int(seed)
        self.max_objects = int(max_objects)
        self.min_visible_fraction = float(min_visible_fraction)
        self.object_scale = float(object_scale)

    def __len__(self):
        return self.num_examples

    def __getitem__(self, index):
        index = int(index)
        if not 0 <= index < self.num_examples:
            raise IndexError(
                f"Index {index} out of range for {self.num_examples}."
            )
        return self.render(index)

    def rng(self, index):
        """The random generator of example `index` (pure function of it)."""
        return np.random.default_rng([self.seed, SPLITS[self.split], index])

    def _place_objects(self, rng):
        size = self.image_size
        count = int(rng.integers(1, self.max_objects + 1))
        colours = rng.permutation(len(COLOUR_NAMES))[:count]
        objects, masks, visible = [], [], []
        for colour_index in colours:
            shape = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
            size_name = SIZES[int(rng.integers(len(SIZES)))]
            extent = (
                rng.uniform(*SIZE_FRACTIONS[size_name]) * self.object_scale * size
            )
            for _ in range(8):
                cx, cy = rng.uniform(extent / 2, size - extent / 2, size=2)
                mask = draw_shape_mask(shape, cx, cy, extent, size)
                if not mask.any():
                    continue
                hides_too_much = any(
                    np.count_nonzero(seen & ~mask)
                    < self.min_visible_fraction * np.count_nonzero(full)
                    for seen, full in zip(visible, masks)
                )
                if not hides_too_much:
                    break
            else:
                continue  # No placement keeps the others visible: drop it.
            for seen in visible:
                seen &= ~mask
            objects.append(
                {
                    "shape": shape,
                    "class_id": SHAPE_CLASSES.index(shape) + 1,
                    "colour": COLOUR_NAMES[int(colour_index)],
                    "size": size_name,
                    "center": (float(cx), float(cy)),
                    "extent": float(extent),
                }
            )
            masks.append(mask)
            visible.append(mask.copy())
        return objects, masks, visible

    def render(self, index):
        """Renders example `index` (see the module docstring for the keys)."""
        rng = self.rng(index)
        size = self.image_size
        objects, masks, visible = self._place_objects(rng)
        depths = np.sort(rng.uniform(0.15, 0.9, size=len(objects)))[::-1]

        instance_mask = np.zeros((size, size), dtype=np.int32)
        for k, mask in enumerate(masks):
            instance_mask[mask] = k + 1
        for k, obj in enumerate(objects):
            rows, cols = np.nonzero(masks[k])
            obj["bbox"] = (
                int(cols.min()),
                int(rows.min()),
                int(cols.max()) + 1,
                int(rows.max()) + 1,
            )
            obj["depth"] = float(depths[k])
            obj["visible_pixels"] = int(np.count_nonzero(visible[k]))
            obj["visible_fraction"] = obj["visible_pixels"] / int(
                np.count_nonzero(masks[k])
            )
            obj["region"] = region_of(visible[k])
            # The objects seen where this one would be: those it is visibly
            # behind. (An object hidden there by a third one is not named.)
            shown_over = np.unique(instance_mask[masks[k] & ~visible[k]])
            obj["occluded_by"] = [int(j) - 1 for j in shown_over]

        class_lut = np.array(
            [0] + [obj["class_id"] for obj in objects], dtype=np.int32
        )
        colour_id_lut = np.array(
            [0] + [COLOUR_NAMES.index(obj["colour"]) + 1 for obj in objects],
            dtype=np.int32,
        )
        depth_lut = np.array(
            [1.0] + [obj["depth"] for obj in objects], dtype=np.float32
        )
        background = BACKGROUND_COLOURS[
            int(rng.integers(len(BACKGROUND_COLOURS)))
        ]
        colour_lut = [background]
        for obj in objects:
            jitter = rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
            colour_lut.append(np.asarray(COLOURS[obj["colour"]]) + jitter)
        colour_lut = np.asarray(colour_lut, dtype=np.int16)
        noise = rng.integers(
            -_NOISE_LEVEL,
            _NOISE_LEVEL + 1,
            size=(size, size, 3),
            dtype=np.int16,
        )
        image = np.clip(colour_lut[instance_mask] + noise, 0, 255).astype(
            np.uint8
        )

        main_object = max(
            range(len(objects)), key=lambda k: (objects[k]["visible_pixels"], k)
        )
        return {
            "image": image,
            "web_caption": web_caption(objects, main_object, rng),
            "synthetic_caption": synthetic_caption(objects),
            "synthetic_captions": synthetic_captions(objects),
            "class_mask": class_lut[instance_mask],
            "colour_mask": colour_id_lut[instance_mask],
            "instance_mask": instance_mask,
            "depth": depth_lut[instance_mask],
            "objects": objects,
            "label": objects[main_object]["class_id"] - 1,
            "index": index,
        }

    def image_text_source(self, encode=False, multi_granularity_captions=False):
        """This split as image-text records for the pretraining pipeline.

        Args:
            encode: bool. Give PNG bytes instead of arrays (exercises the
                decoding path; slower).
            multi_granularity_captions: bool. Give the synthetic caption as
                the list of its three granularities (`synthetic_captions`),
                of which the pipeline draws one per example and step,
                instead of the full caption alone.
        """
        return ShapesImageTextSource(
            self,
            encode=encode,
            multi_granularity_captions=multi_granularity_captions,
        )

    def __repr__(self):
        return (
            f"ShapesDataset(split={self.split!r}, "
            f"num_examples={self.num_examples}, "
            f"image_size={self.image_size}, seed={self.seed}, "
            f"max_objects={self.max_objects}, object_scale={self.object_scale})"
        )


class ShapesImageTextSource:
    """Adapter: `ShapesDataset` examples as image-text records.

    Args:
        dataset: a `ShapesDataset`.
        encode: bool. PNG-encode the images.
        multi_granularity_captions: bool. The synthetic caption as the list
            `[phrase, sentence, full]` instead of the full caption alone.
    """

    def __init__(self, dataset, encode=False, multi_granularity_captions=False):
        self.dataset = dataset
        self.encode = encode
        self.multi_granularity_captions = bool(multi_granularity_captions)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        example = self.dataset[index]
        image = example["image"]
        if self.encode:
            image = encode_png(image)
        if self.multi_granularity_captions:
            synthetic = list(example["synthetic_captions"])
        else:
            synthetic = example["synthetic_caption"]
        return make_record(
            image=image,
            caption=example["web_caption"],
            synthetic_caption=synthetic,
            key=f"shapes/{self.dataset.split}/{example['index']}",
        )


def encode_png(image):
    """uint8 array -> PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def write_shapes_jsonl(
    output_dir,
    num_examples=100,
    split="train",
    image_size=64,
    seed=0,
    index_name="index.jsonl",
    multi_granularity_captions=False,
):
    """Writes a shapes split as a JSONL image-text folder.

    Images go to `output_dir/images/` as PNG; each index line has `image`,
    `caption` (the web caption), `synthetic_caption`, `label` and
    `class_name`.

    Args:
        output_dir: folder to write (created if needed).
        num_examples, split, image_size, seed: as `ShapesDataset`.
        index_name: file name of the index.
        multi_granularity_captions: bool. Write `synthetic_caption` as the
            list `[phrase, sentence, full]` instead of the full caption.

    Returns:
        The path of the JSONL index.

    Example:
    ```python
    jsonl_path = write_shapes_jsonl("/tmp/shapes", num_examples=64)
    source = JsonlImageTextSource(jsonl_path)
    ```
    """
    dataset = ShapesDataset(split, num_examples, image_size, seed)
    image_dir = os.path.join(output_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    jsonl_path = os.path.join(output_dir, index_name)
    with open(jsonl_path, "w", encoding="utf-8") as index_file:
        for index in range(num_examples):
            example = dataset[index]
            name = f"images/{split}_{index:06d}.png"
            with open(os.path.join(output_dir, name), "wb") as f:
                f.write(encode_png(example["image"]))
            line = {
                "image": name,
                "caption": example["web_caption"],
                "synthetic_caption": (
                    list(example["synthetic_captions"])
                    if multi_granularity_captions
                    else example["synthetic_caption"]
                ),
                "label": example["label"],
                "class_name": SHAPE_CLASSES[example["label"]],
            }
            index_file.write(json.dumps(line) + "\n")
    return jsonl_path
