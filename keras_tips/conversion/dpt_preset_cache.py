"""Where `TIPSDPTHead.from_preset` finds a preset: the download cache.

A name registered in `keras_tips.models.tips_dpt_presets.TIPS_DPT_PRESETS`
is downloaded once (`keras.utils.get_file`, into
`$KERAS_TIPS_HOME/downloads`), converted, checked against its registered
configuration and cached as a preset in `$KERAS_TIPS_HOME/presets/<name>`;
later calls reuse that preset. `KERAS_TIPS_CHECKPOINT_BASE_URL` points every
registered name at a mirror, as for the encoders
(`keras_tips.conversion.preset_cache`).

The head class is an argument, as for the encoders: this module does not
depend on `TIPSDPTHead`, whose `from_preset` calls it.
"""

import os

from keras_tips.atomic_files import save_preset_atomically
from keras_tips.conversion.dpt_checkpoint import build_head_from_checkpoint
from keras_tips.conversion.preset_cache import MIRROR_ENV
from keras_tips.conversion.preset_cache import download_checkpoint_file
from keras_tips.conversion.preset_cache import keras_tips_home
from keras_tips.errors import CheckpointError
from keras_tips.models.tips_dpt_presets import TIPS_DPT_PRESETS


def _download(url, cache_dir, name):
    try:
        return download_checkpoint_file(url, cache_dir)
    except RuntimeError as error:
        cause = error.__cause__ or error
        task = TIPS_DPT_PRESETS[name]["config"]["task"]
        raise RuntimeError(
            f"Could not download the DPT head {name!r} from {url} ({cause}). "
            "If this machine is offline, download the file elsewhere and "
            f"convert it with `keras-tips convert-dpt --checkpoint FILE "
            f"--task {task} --output DIR`, then load DIR; or set "
            f"{MIRROR_ENV} to a local mirror."
        ) from cause


def _check_registered_config(head, name):
    config = head.get_config()
    registered = TIPS_DPT_PRESETS[name]["config"]
    different = [
        f"{key} {config[key]!r} (registered: {value!r})"
        for key, value in registered.items()
        if config[key] != value
    ]
    if different:
        raise CheckpointError(
            f"The downloaded checkpoint of {name!r} does not match its "
            f"registered configuration: {', '.join(different)}."
        )


def resolve_dpt_preset(preset, head_class):
    """Returns the local preset directory of `preset`.

    A registered name is downloaded and converted on first use, then reused.
    A directory is returned as it is; anything else is refused with the
    registered names.

    Args:
        preset: a name from `TIPS_DPT_PRESETS` or a preset directory.
        head_class: the head to build when converting (`TIPSDPTHead`).

    Returns:
        str, a preset directory.

    Example:
    ```python
    preset_dir = resolve_dpt_preset("tips_v2_b14_depth_dpt", TIPSDPTHead)
    ```
    """
    if preset not in TIPS_DPT_PRESETS:
        if isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset):
            return os.fspath(preset)
        raise ValueError(
            f"Unknown DPT head preset {preset!r}: not a directory and not one "
            f"of the registered names {sorted(TIPS_DPT_PRESETS)}."
        )
    entry = TIPS_DPT_PRESETS[preset]
    cache_dir = keras_tips_home()
    preset_dir = os.path.join(cache_dir, "presets", preset)
    if os.path.isfile(os.path.join(preset_dir, "model.weights.h5")):
        return preset_dir
    checkpoint = _download(entry["url"], cache_dir, preset)
    config = entry["config"]
    head = build_head_from_checkpoint(
        head_class,
        checkpoint,
        task=config["task"],
        encoder_layers=config["encoder_layers"],
        min_depth=config.get("min_depth"),
        max_depth=config.get("max_depth"),
    )
    _check_registered_config(head, preset)
    save_preset_atomically(head, preset_dir)
    return preset_dir
