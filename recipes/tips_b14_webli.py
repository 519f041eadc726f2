"""tips_b14_webli: TIPS ViT-B/14 at paper scale on a GPU/TPU mesh.

The hyper-parameters follow the TIPS paper's recipe (DINOv2-style
self-distillation and masking on top of a two-CLS CLIP), adapted to an
image-caption corpus stored as ArrayRecord shards with `caption` (web
alt-text) and `synthetic_caption` fields (`python -m keras_tips.data.convert`
writes such shards from a JSONL index or from img2dataset's webdataset tars).

| what                  | value                                              |
|-----------------------|----------------------------------------------------|
| image tower           | ViT-B/14, 768 wide, 12 blocks, 12 heads            |
| text tower            | 768 wide, 12 blocks, 12 heads, 64 tokens           |
| global / local crops  | 1 x 224 px / 6 x 98 px                             |
| contrastive crop      | 1 x 224 px, 90-100 % of the image, flip, no colour |
| masking               | 75 % of patches, block-wise, half of the images    |
| batch                 | 16,384 global (per process: batch_size)            |
| steps                 | 200,000, 10,000 warm-up, checkpoint every 2,000    |
| optimizer             | AdamW, peak lr 5e-4, wd 0.04 -> 0.2, clip 3.0      |
| heads                 | 65,536 prototypes, MLP 2,048, bottleneck 256       |
| teacher               | momentum 0.994 -> 1.0, temperature 0.04 -> 0.07    |
| precision             | mixed bfloat16                                     |
| distribution          | data parallel over every device                    |

The position grid (224 // 14 = 16) follows `data.image_size`, the text
tower's length `data.sequence_length`, the schedules `train.total_steps`,
and the iBOT heads' gathered tokens per image (`objective.max_masked_patches`,
75 % of 256 = 192) the mask settings. Options of DINOv2 not used here:
`optimizer.freeze_last_layer_steps` and `optimizer.module_clipnorm`.

Augmentation, by crop kind (`data.pipeline.augmentation`):

| crop (batch key)                    | loss                       | augmentation                                                                 |
|-------------------------------------|----------------------------|------------------------------------------------------------------------------|
| contrastive (`contrastive_images`)  | image-text contrastive     | resized crop of 90-100 % of the area, flip 0.5 with left/right swapped in the captions; no colour change, blur or solarisation |
| global (`global_images`)            | teacher; masked student (iBOT) | DINOv2's: crop of 32-100 %, flip, colour jitter 0.8 (hue ±0.1 turn), grayscale 0.2, blur 0.55, solarise 0.1 |
| local (`local_images`, 6)           | student (DINO)             | DINOv2's: crop of 5-32 %, flip, colour jitter 0.8, grayscale 0.2, blur 0.5    |

The TIPS paper computes the contrastive loss, the teacher targets and the
masked student on one global crop (DINOv2 uses two global crops) and does
not list its photometric augmentations. Here the caption-paired view is a
crop of its own, as open_clip's training crop (90-100 %, no colour change):
DINO's photometric stack on the captioned view makes captions that name
colours ("a red car", "a black and white photo") or objects cut away by a
32 % crop untrue. It costs one more 224 px crop per example in the input
pipeline and no extra compute: the student's unmasked pass, which the
contrastive loss needs anyway (`objective.contrastive_view="unmasked"`),
runs on it instead of on the global crop. `--set
data.pipeline.augmentation.contrastive_crop=None` goes back to the paper's
single crop (then the global crop is the captioned view and should not be
distorted).

Run (one process per host, each with its own local run directory: the
checkpoints are written atomically on a local file system and hold that
host's data position):

    keras-tips pretrain --recipe recipes/tips_b14_webli.py --output runs/b14/host_$HOST \
        --set data.path='/data/webli/records-*.array_record' \
        --set data.tokenizer=tokenizer.model \
        --set data.pipeline.batch_size=2048 \
        --set data.pipeline.shard_index=$HOST --set data.pipeline.shard_count=8

For tensor parallelism of the larger towers use
`--set train.distribution=model_parallel:4`.
"""

from keras_tips.data.masking import PatchMaskConfig
from keras_tips.data.transforms import CAPTIONED_CROP
from keras_tips.data.transforms import DINO_GLOBAL_CROP
from keras_tips.data.transforms import DINO_LOCAL_CROP
from keras_tips.data.transforms import AugmentationConfig
from keras_tips.training.optimizers import OptimizerConfig
from keras_tips.training.recipe import DataConfig
from keras_tips.training.recipe import ModelConfig
from keras_tips.training.recipe import ObjectiveConfig
from keras_tips.training.recipe import PretrainRecipe
from keras_tips.training.recipe import TrainConfig


def recipe():
    return PretrainRecipe(
        name="tips_b14_webli",
        model=ModelConfig(
            vision=dict(
                hidden_dim=768, num_layers=12, num_heads=12, intermediate_dim=3072,
                patch_size=14, drop_path_rate=0.1, layer_scale_init_value=1e-5,
            ),
            text=dict(
                hidden_dim=768, num_layers=12, num_heads=12, intermediate_dim=3072,
            ),
            temperature=0.07,
            dtype="mixed_bfloat16",
        ),
        objective=ObjectiveConfig(
            num_prototypes=65536,
            head_hidden_dim=2048,
            head_bottleneck_dim=256,
            head_num_layers=3,
            distill_weight=1.0,
            mask_weight=2.0,
            teacher_momentum=(0.994, 1.0),
            teacher_temperature=(0.04, 0.07),
            teacher_temperature_warmup_steps=30_000,
            student_temperature=0.1,
            # The TIPS (v1) objective; `recipes/tips_v2_b14.py` for TIPSv2.
            mask_loss_tokens="masked",
            ibot_averaging="masked_images",
            teacher="ema",
        ),
        optimizer=OptimizerConfig(
            peak_learning_rate=5e-4,
            warmup_steps=10_000,
            final_learning_rate=1e-6,
            weight_decay=0.04,
            final_weight_decay=0.2,
            global_clipnorm=3.0,
            layer_decay=1.0,
        ),
        data=DataConfig(
            source="array_record",
            path=None,
            tokenizer=None,
            image_size=224,
            sequence_length=64,
            pipeline=dict(
                batch_size=2048,
                local_crop_count=6,
                local_image_size=98,
                mask=PatchMaskConfig(ratio=0.75, mode="block", probability=0.5),
                augmentation=AugmentationConfig(
                    contrastive_crop=CAPTIONED_CROP,
                    global_crop=DINO_GLOBAL_CROP,
                    local_crop=DINO_LOCAL_CROP,
                ),
                worker_count=16,
            ),
        ),
        train=TrainConfig(
            total_steps=200_000,
            steps_per_checkpoint=2_000,
            distribution="data_parallel",
            jit_compile=True,
        ),
    )
