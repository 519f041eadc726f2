"""Configuration of the pretraining input pipeline."""

import dataclasses

from keras_tips.backend.processes import process_count
from keras_tips.backend.processes import process_index
from keras_tips.data.decoding import DEFAULT_MAX_IMAGE_PIXELS
from keras_tips.data.masking import PatchMaskConfig
from keras_tips.data.transforms import AugmentationConfig

# Fields that a recipe sets from its own settings (the training resolution,
# the model's patch size, the run's seed). None leaves them unset; a pipeline
# is only built from a config that has them.
SETTINGS_FROM_RECIPE = ("global_image_size", "patch_size", "seed")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Configuration of the pretraining input pipeline.

    Attributes:
        batch_size: int. Examples per batch (per process).
        global_image_size: int. Side G of the global crop, a multiple of
            `patch_size`. In a recipe it follows `data.image_size`.
        local_crop_count: int. Local crops per example (0 for none).
        local_image_size: int. Side S of the local crops.
        patch_size: int. ViT patch size (14); sets the mask grid
            G // patch_size. In a recipe it follows the model's.
        mask: `PatchMaskConfig`. How the iBOT patch masks are drawn (ratio,
            mode, probability that an image is masked, smallest block).
        augmentation: `AugmentationConfig`: how each kind of crop (the
            contrastive crop paired with the captions, the global crop,
            the local crops) is cut and distorted.
        training: bool. False: resize + centre crop only, no local crops,
            empty masks, no shuffle.
        eval_crop_fraction: float. Centre-crop fraction when not training.
        shuffle: bool. Shuffle the records (each epoch differently).
        seed: int. Seed of the shuffle and of every random augmentation. In
            a recipe it follows `train.seed`.
        num_epochs: int or None (repeat forever).
        drop_remainder: bool. Drop the last incomplete batch.
        worker_count: int. Worker processes (0: all in this process). With
            workers, each worker builds whole batches; the data order depends
            on `worker_count` (deterministic for a given count), and a saved
            state must be restored with the same count.
        worker_buffer_size: int. Batches buffered per worker.
        read_thread_count: int. Threads decoding examples in each process.
        read_buffer_size: int. Examples buffered by those threads.
        shard_index, shard_count: ints, or None (both): this process reads
            records `shard_index::shard_count` (equal shard sizes; the
            remainder of the division is dropped). None: one shard per
            process of the run, this process's index of the process count
            (in one process, all records), so each host of a multi-process
            run reads its own part with no flag. Set them only to read a
            subset; in a multi-process run there may not be fewer shards
            than processes.
        max_image_pixels: int. Larger images are skipped unread.
        max_skipped_fraction: float or None. Stop with `ValueError` when more
            than this fraction of the first `skip_check_window` records is
            skipped. None disables the check.
        skip_check_window: int. See `max_skipped_fraction`.
        require_caption: bool. Skip records with neither caption usable.
        max_caption_chars: int. Longer captions are cut.
        include_texts: bool. Also return the caption strings
            ("web_caption", "synthetic_caption") for inspection.

    `global_image_size`, `patch_size` and `seed` may be None ("not set
    here"): a recipe leaves them so and fills them in from its own settings
    (see `keras_tips.training.recipe`). A pipeline refuses a config in which
    one is still None.

    Example:
    ```python
    config = PipelineConfig(
        batch_size=64, global_image_size=112, local_crop_count=2,
        local_image_size=56, mask=PatchMaskConfig(ratio=0.5, mode="block"),
    )
    ```
    """

    batch_size: int = 32
    global_image_size: int | None = 224
    local_crop_count: int = 6
    local_image_size: int = 98
    patch_size: int | None = 14
    mask: PatchMaskConfig = dataclasses.field(default_factory=PatchMaskConfig)
    augmentation: AugmentationConfig = dataclasses.field(
        default_factory=AugmentationConfig
    )
    training: bool = True
    eval_crop_fraction: float = 1.0
    shuffle: bool = True
    seed: int | None = 0
    num_epochs: int | None = None
    drop_remainder: bool = True
    worker_count: int = 0
    worker_buffer_size: int = 2
    read_thread_count: int = 1
    read_buffer_size: int = 16
    shard_index: int | None = None
    shard_count: int | None = None
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_skipped_fraction: float | None = 0.5
    skip_check_window: int = 200
    require_caption: bool = True
    max_caption_chars: int = 2000
    include_texts: bool = False

    def __post_init__(self):
        # Nested settings may arrive as dicts (JSON, `--set` literals).
        for name, config_class in (
            ("mask", PatchMaskConfig),
            ("augmentation", AugmentationConfig),
        ):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, config_class(**value))
            elif not isinstance(value, config_class):
                raise ValueError(
                    f"`{name}` must be a {config_class.__name__} (or a dict "
                    f"of its fields). Received: {value!r}"
                )
        if self.batch_size < 1:
            raise ValueError(
                f"`batch_size` must be >= 1. Received: {self.batch_size}"
            )
        if self.patch_size is not None and self.patch_size < 1:
            raise ValueError(
                f"`patch_size` must be >= 1. Received: {self.patch_size}"
            )
        if (
            self.global_image_size is not None
            and self.patch_size is not None
            and (
                self.global_image_size < self.patch_size
                or self.global_image_size % self.patch_size
            )
        ):
            raise ValueError(
                f"`global_image_size` ({self.global_image_size}) must be a "
                f"positive multiple of `patch_size` ({self.patch_size})."
            )
        if self.local_crop_count < 0 or self.local_image_size < 1:
            raise ValueError(
                "`local_crop_count` must be >= 0 and `local_image_size` >= 1. "
                f"Received: {self.local_crop_count}, {self.local_image_size}"
            )
        if self.num_epochs is not None and self.num_epochs < 1:
            raise ValueError(
                "`num_epochs` must be >= 1 or None. "
                f"Received: {self.num_epochs}"
            )
        if self.worker_count < 0 or self.read_thread_count < 0:
            raise ValueError(
                "`worker_count` and `read_thread_count` must be >= 0."
            )
        if (self.shard_index is None) != (self.shard_count is None):
            raise ValueError(
                "Set both `shard_index` and `shard_count`, or neither (one "
                f"shard per process). Received: {self.shard_index}, "
                f"{self.shard_count}"
            )
        if self.shard_count is not None and not (
            0 <= self.shard_index < self.shard_count
        ):
            raise ValueError(
                f"Need 0 <= shard_index < shard_count. Received: "
                f"{self.shard_index}, {self.shard_count}"
            )

    def check_complete(self):
        """Raises `ValueError` if a field a recipe sets is still None."""
        unset = [n for n in SETTINGS_FROM_RECIPE if getattr(self, n) is None]
        if unset:
            raise ValueError(
                f"PipelineConfig {', '.join(unset)} not set (None). Pass "
                "them, or build the config from a recipe (`load_recipe`), "
                "which sets them from data.image_size, the model's patch "
                "size and train.seed."
            )
        return self

    def shard(self):
        """`(shard_index, shard_count)` this process reads: the configured
        ones, else this process's index of the process count.

        Raises:
            ValueError: configured shards fewer than the processes (several
                processes would read the same records).
        """
        index, count = process_index(), process_count()
        if self.shard_count is None:
            return index, count
        if self.shard_count < count:
            raise ValueError(
                f"data.pipeline.shard_count={self.shard_count} is fewer than "
                f"the {count} processes of the run: processes would read the "
                "same records. Leave shard_index and shard_count unset (each "
                "process then reads its own shard), or set at least one "
                "shard per process."
            )
        return self.shard_index, self.shard_count

    @property
    def patch_grid_size(self):
        """Patches per side of the global crop (the mask grid)."""
        self.check_complete()
        return self.global_image_size // self.patch_size

    @property
    def num_patches(self):
        return self.patch_grid_size**2

    @property
    def effective_local_crop_count(self):
        return self.local_crop_count if self.training else 0
