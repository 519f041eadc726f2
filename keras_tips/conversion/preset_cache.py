"""Where `TIPSModel.from_preset` finds a preset: the download cache.

A name registered in `keras_tips.models.tips_presets.TIPS_PRESETS` is
downloaded once (`keras.utils.get_file`), converted into a Keras preset
directory on first use and cached; later calls reuse that directory. A
Hugging Face TIPSv2 snapshot (an `hf://org/name` handle, downloaded with
`huggingface_hub`, or a local snapshot folder) is converted on first use too
and cached by its revision (`conversion/hf_checkpoint.py`). A local preset
directory is checked and used as it is; any other handle (Kaggle, a Keras
preset on the Hugging Face Hub) is left to keras-hub.

Set `KERAS_TIPS_CHECKPOINT_BASE_URL` to a mirror (any URL `get_file` reads,
including `file://` paths) to fetch from somewhere else, and
`KERAS_TIPS_HOME` to move the cache (default `~/.keras/keras_tips`).
"""

import os

import keras

from keras_tips.conversion import hf_checkpoint
from keras_tips.conversion.official_preset import convert_to_preset
from keras_tips.models.tips_presets import TIPS_PRESETS

HOME_ENV = "KERAS_TIPS_HOME"
MIRROR_ENV = "KERAS_TIPS_CHECKPOINT_BASE_URL"
PRESET_WEIGHTS_FILE = "model.weights.h5"
PRESET_FILES = (
    "config.json",
    "metadata.json",
    "tokenizer.json",
    "preprocessor.json",
    "image_converter.json",
    os.path.join("assets", "tokenizer", "vocabulary.spm"),
)


def keras_tips_home():
    """Root of the local cache of downloads and converted presets."""
    return os.path.expanduser(
        os.environ.get(HOME_ENV, os.path.join("~", ".keras", "keras_tips"))
    )


def checkpoint_url(url):
    """`url`, or the same file name under the mirror of `MIRROR_ENV`."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + url.rsplit("/", 1)[1]


def download_checkpoint_file(url, cache_dir):
    """Downloads one official file into `cache_dir/downloads` (once).

    Args:
        url: str. The file's official address (see `checkpoint_url`).
        cache_dir: str. Root of the cache (`keras_tips_home()`).

    Returns:
        str, the local path of the file.

    Raises:
        RuntimeError: the file cannot be downloaded (a network failure, not
            a `CheckpointError` of the file); the message says how to
            convert it offline instead.
    """
    url = checkpoint_url(url)
    fname = url.rsplit("/", 1)[1]
    # get_file falls back to /tmp/.keras when cache_dir does not exist yet.
    os.makedirs(os.path.join(cache_dir, "downloads"), exist_ok=True)
    try:
        return keras.utils.get_file(
            fname=fname, origin=url, cache_dir=cache_dir, cache_subdir="downloads"
        )
    except Exception as error:  # get_file raises several network errors.
        raise RuntimeError(
            f"Could not download {url} ({error}). If this machine is offline, "
            "download the file elsewhere and convert it with `keras-tips "
            "convert --vision V.npz --text T.npz --tokenizer tokenizer.model "
            f"--output DIR`, then load DIR; or set {MIRROR_ENV} to a local "
            "mirror."
        ) from error


def check_preset_dir(preset_dir):
    """Raises a clear error when a local preset directory is incomplete."""
    missing = [
        name
        for name in PRESET_FILES
        if not os.path.isfile(os.path.join(preset_dir, name))
    ]
    has_weights = any(
        os.path.isfile(os.path.join(preset_dir, name))
        for name in (PRESET_WEIGHTS_FILE, "model.weights.json")
    )
    if not has_weights:
        missing.append(PRESET_WEIGHTS_FILE)
    if missing:
        raise FileNotFoundError(
            f"The preset directory {preset_dir!r} is incomplete: missing "
            f"{', '.join(missing)}. Re-create it with `model.save_to_preset` "
            "or `keras-tips convert`."
        )


def hf_snapshot_preset(snapshot_dir, task_class):
    """The converted preset of a Hugging Face TIPSv2 snapshot folder,
    converted on first use and cached under
    `KERAS_TIPS_HOME/presets/hf/<name>/<revision>` (see
    `hf_checkpoint.snapshot_cache_key`).

    Args:
        snapshot_dir: str. A folder with `config.json` (`tipsv2`),
            `model.safetensors` and `tokenizer.model`.
        task_class: the task that converts it (`TIPSModel`).

    Returns:
        str, the preset directory.
    """
    name, revision = hf_checkpoint.snapshot_cache_key(snapshot_dir)
    preset_dir = os.path.join(keras_tips_home(), "presets", "hf", name, revision)
    if not os.path.isfile(os.path.join(preset_dir, PRESET_WEIGHTS_FILE)):
        hf_checkpoint.convert_hf_snapshot(
            task_class, snapshot_dir, preset_dir, overwrite=True
        )
    return preset_dir


def hf_hub_preset(handle, task_class):
    """The preset of an `hf://org/name` handle.

    A TIPSv2 repository (its `config.json` of model type `tipsv2`) is
    downloaded with `huggingface_hub` (its cache; `HF_HUB_OFFLINE=1` works)
    and converted on first use (`hf_snapshot_preset`); any other repository
    (a Keras preset) is returned unchanged for keras-hub to load.
    """
    config_dir = os.path.dirname(hf_checkpoint.download_hf_config(handle))
    if not hf_checkpoint.is_hf_snapshot(config_dir):
        return handle
    name, revision = hf_checkpoint.snapshot_cache_key(config_dir)
    preset_dir = os.path.join(keras_tips_home(), "presets", "hf", name, revision)
    if os.path.isfile(os.path.join(preset_dir, PRESET_WEIGHTS_FILE)):
        return preset_dir  # This revision is converted: no weights to fetch.
    return hf_snapshot_preset(hf_checkpoint.download_hf_snapshot(handle), task_class)


def resolve_preset(preset, task_class):
    """Returns a preset handle keras-hub can load for `preset`.

    A registered name is downloaded and converted on first use, then reused;
    so is a Hugging Face TIPSv2 snapshot (`hf://org/name` or a local
    folder). A preset directory is checked for completeness. Anything else
    (a Kaggle handle, a Keras preset on the Hugging Face Hub) is returned
    unchanged for keras-hub to load.

    Args:
        preset: a name from `TIPS_PRESETS`, a preset directory, a Hugging
            Face TIPSv2 snapshot (handle or folder) or a keras-hub preset
            handle.
        task_class: the `keras_hub.models.Task` that converts a registered
            checkpoint (`TIPSModel`; see `official_preset`).

    Returns:
        str, a local preset directory or the handle given.

    Example:
    ```python
    preset_dir = resolve_preset("tips_oss_b14_highres_distilled", TIPSModel)
    preset_dir = resolve_preset("hf://google/tipsv2-b14", TIPSModel)
    ```
    """
    if preset not in TIPS_PRESETS:
        if isinstance(preset, str) and preset.startswith(hf_checkpoint.HF_SCHEME):
            return hf_hub_preset(preset, task_class)
        if isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset):
            if hf_checkpoint.is_hf_snapshot(preset):
                return hf_snapshot_preset(os.fspath(preset), task_class)
            check_preset_dir(os.fspath(preset))
            return os.fspath(preset)
        if isinstance(preset, str) and "://" not in preset:
            raise ValueError(
                f"Unknown preset {preset!r}: not a directory and not one of "
                f"the registered names {sorted(TIPS_PRESETS)}."
            )
        return preset
    entry = TIPS_PRESETS[preset]
    cache_dir = keras_tips_home()
    preset_dir = os.path.join(cache_dir, "presets", preset)
    if os.path.isfile(os.path.join(preset_dir, PRESET_WEIGHTS_FILE)):
        return preset_dir
    vision = download_checkpoint_file(entry["vision_url"], cache_dir)
    text = download_checkpoint_file(entry["text_url"], cache_dir)
    tokenizer = download_checkpoint_file(entry["tokenizer_url"], cache_dir)
    text_config = entry["config"]["text"]
    convert_to_preset(
        task_class,
        output_dir=preset_dir,
        overwrite=True,
        vision_path=vision,
        text_path=text,
        tokenizer_path=tokenizer,
        image_size=entry["config"]["image_size"],
        vision_num_heads=entry["config"]["vision"]["num_heads"],
        text_num_heads=text_config["num_heads"],
        max_sequence_length=text_config.get("max_sequence_length", 64),
    )
    return preset_dir
