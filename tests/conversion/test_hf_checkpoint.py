"""Hugging Face TIPSv2 snapshots: parity with `transformers`' `Tipsv2Model`,
conversion on first use and caching, `hf://` handles, strict checks.

The snapshots are random tiny `Tipsv2Model`s written by `save_pretrained`
in the test (plus the reference `tokenizer.model`); `hf://` is resolved
through a stand-in for `huggingface_hub`'s downloads: nothing is fetched.
The `transformers` side runs in PyTorch on the CPU in every backend's
process.
"""

import json
import os
import shutil

import numpy as np
import pytest

from keras_tips import TIPSModel
from keras_tips.conversion import hf_checkpoint
from keras_tips.conversion.hf_checkpoint import build_task_from_hf_snapshot
from keras_tips.conversion.preset_cache import resolve_preset
from keras_tips.errors import CheckpointError
from tests.conftest import reference_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

IMAGE_SIZES = ((56, 56), (42, 70), (112, 112))
TEXTS = ["a photo of two cows", "A Red Circle on the left", "", "café ☃"]
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _random_tipsv2(ffn):
    """A tiny `Tipsv2Model` with every weight random (not its init)."""
    config = transformers.Tipsv2Config(
        vision_config=dict(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=56, use_swiglu_ffn=ffn == "swiglu",
        ),
        text_config=dict(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, vocab_size=96, max_position_embeddings=16,
        ),
    )
    torch.manual_seed(0)
    model = transformers.Tipsv2Model(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn_like(parameter)
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            elif name == "temperature":
                parameter.fill_(0.02)
            else:
                parameter.copy_(0.1 * noise)
    return model


def _hf_outputs(model, token_ids, padding_mask):
    images = np.random.default_rng(1)
    outputs = {}
    with torch.no_grad():
        for size in IMAGE_SIZES:
            pixels = images.random((2, *size, 3)).astype("float32")
            tokens = model.vision_model(
                pixel_values=torch.from_numpy(pixels).permute(0, 3, 1, 2)
            ).last_hidden_state.numpy()
            outputs[size] = (pixels, tokens)
        text = model.text_model(
            input_ids=torch.from_numpy(token_ids.astype("int64")),
            attention_mask=torch.from_numpy(padding_mask.astype("int64")),
        ).pooler_output.numpy()
    return outputs, text


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """kind -> (snapshot folder, HF image outputs by size, HF text outputs),
    made on first use."""
    from keras_tips import TIPSTokenizer

    made = {}

    def make(kind):
        if kind not in made:
            directory = tmp_path_factory.mktemp(f"tipsv2_{kind}")
            model = _random_tipsv2(kind)
            model.save_pretrained(directory)
            tokenizer_path = os.path.join(reference_dir("tips_tiny"), "tokenizer.model")
            shutil.copy(tokenizer_path, directory / "tokenizer.model")
            # The official tokenization (not transformers' tokenizer) feeds both.
            token_ids, padding_mask = TIPSTokenizer(
                tokenizer_path, sequence_length=16
            ).tokenize_numpy(TEXTS)
            images, text = _hf_outputs(model, token_ids, padding_mask)
            made[kind] = (str(directory), images, text)
        return made[kind]

    return make


@pytest.fixture(params=["mlp", "swiglu"])
def snapshot_of_each_kind(request, snapshots):
    return snapshots(request.param)


@pytest.fixture
def snapshot(snapshots):
    return snapshots("mlp")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_TIPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.multibackend
def test_matches_transformers_tipsv2(snapshot_of_each_kind, home):
    directory, images, text = snapshot_of_each_kind
    model = TIPSModel.from_preset(directory)
    for size, (pixels, tokens) in images.items():
        features = model.encode_images(pixels)
        for key, expected in (
            ("cls_1", tokens[:, 0]),
            ("cls_2", tokens[:, 1]),
            ("patches", tokens[:, 2:]),
        ):
            np.testing.assert_allclose(
                features[key], expected, rtol=0, atol=1e-5, err_msg=f"{key} {size}"
            )
    np.testing.assert_allclose(model.encode_texts(TEXTS), text, rtol=0, atol=1e-5)
    assert model.temperature_for("cls_1") == pytest.approx(0.02, rel=1e-6)
    assert model.preprocessor.image_converter.image_size == (56, 56)
    assert model.preprocessor.tokenizer.sequence_length == 16


def test_converted_once_per_revision_and_reused(snapshot, home, tmp_path, monkeypatch):
    directory = tmp_path / "snapshot"
    shutil.copytree(snapshot[0], directory)
    first = TIPSModel.from_preset(str(directory))
    converted = list((home / "presets" / "hf" / "snapshot").iterdir())
    assert len(converted) == 1 and (converted[0] / "model.weights.h5").is_file()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(hf_checkpoint, "convert_hf_snapshot", no_conversion)
    again = TIPSModel.from_preset(str(directory))
    np.testing.assert_array_equal(again.encode_texts(TEXTS), first.encode_texts(TEXTS))
    # Changed weights are another revision: converted again.
    monkeypatch.undo()
    monkeypatch.setenv("KERAS_TIPS_HOME", str(home))
    state = safetensors_numpy.load_file(directory / "model.safetensors")
    state["temperature"] = np.array(0.05, "float32")
    safetensors_numpy.save_file(state, directory / "model.safetensors")
    changed = TIPSModel.from_preset(str(directory))
    assert changed.temperature_for("cls_1") == pytest.approx(0.05, rel=1e-6)
    assert len(list((home / "presets" / "hf" / "snapshot").iterdir())) == 2


def test_hf_handle_downloads_once_through_huggingface_hub(snapshot, home, tmp_path, monkeypatch):
    import huggingface_hub

    hub = tmp_path / "hub" / "models--google--tipsv2-b14" / "snapshots" / REVISION
    shutil.copytree(snapshot[0], hub)
    calls = []

    def hf_hub_download(repo_id, filename, **kwargs):
        calls.append(("file", repo_id, filename))
        return str(hub / filename)

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append(("snapshot", repo_id, tuple(allow_patterns)))
        return str(hub)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    model = TIPSModel.from_preset("hf://google/tipsv2-b14")
    preset_dir = home / "presets" / "hf" / "google--tipsv2-b14" / REVISION
    assert (preset_dir / "model.weights.h5").is_file()
    assert [c[0] for c in calls] == ["file", "snapshot"]
    assert calls[1][1] == "google/tipsv2-b14" and "tokenizer.model" in calls[1][2]
    # Converted: the next load reads config.json only.
    TIPSModel.from_preset("hf://google/tipsv2-b14")
    assert [c[0] for c in calls] == ["file", "snapshot", "file"]
    assert model.encode_texts(["two cows"]).shape == (1, 64)

    # A repository that is not a TIPSv2 snapshot is left to keras-hub.
    other = tmp_path / "hub" / "keras_preset"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"registered_name": "x>Y"}))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo_id, filename, **k: str(other / filename))
    assert resolve_preset("hf://someone/keras-model", TIPSModel) == "hf://someone/keras-model"


def test_unreachable_hub_gives_a_clear_error(home, monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(RuntimeError, match="offline"):
        TIPSModel.from_preset("hf://google/tipsv2-b14")


def test_official_tokenization_not_transformers(snapshot, home):
    import sentencepiece

    model = TIPSModel.from_preset(snapshot[0])
    pieces = sentencepiece.SentencePieceProcessor(
        model_file=os.path.join(snapshot[0], "tokenizer.model")
    )
    token_ids, _ = model.tokenize(["CAFÉ ☃ Dog"])
    # ASCII-only lower-casing; characters outside the vocabulary are <unk>
    # (transformers' BPE conversion drops them).
    expected = pieces.encode("cafÉ ☃ dog")
    assert token_ids[0, : len(expected)].tolist() == expected
    assert pieces.unk_id() in expected


def _damaged_copy(snapshot_dir, target, change=None, config_change=None):
    shutil.copytree(snapshot_dir, target)
    if change is not None:
        state = safetensors_numpy.load_file(target / "model.safetensors")
        change(state)
        safetensors_numpy.save_file(state, target / "model.safetensors")
    if config_change is not None:
        config = json.loads((target / "config.json").read_text())
        config_change(config)
        (target / "config.json").write_text(json.dumps(config))
    return str(target)


def _drop(key):
    return lambda state: state.pop(key)


def _add(key):
    return lambda state: state.update({key: np.zeros(3, "float32")})


def _reshape(key):
    return lambda state: state.update({key: state[key][..., :-1]})


@pytest.mark.parametrize(
    "change, config_change, message",
    [
        (_drop("vision_encoder.blocks.1.attn.qkv.bias"), None, "missing keys.*blocks.1.attn.qkv.bias"),
        (_add("vision_encoder.blocks.0.extra"), None, "unexpected keys.*blocks.0.extra"),
        (_add("decoder.head.weight"), None, "neither tower.*decoder.head.weight"),
        (_add("vision_model.embeddings.cls_token"), None, "save_pretrained"),
        (_reshape("text_encoder.transformer.resblocks.0.attn.out_proj.weight"), None,
         "Shape mismatch for 'transformer.resblocks.0.attn.out_proj.weight'"),
        (None, lambda c: c["vision_config"].update(hidden_size=32), "hidden_size=32"),
        (None, lambda c: c["vision_config"].update(num_register_tokens=4), "register"),
        (None, lambda c: c["text_config"].update(hidden_act="gelu"), "ReLU"),
        (None, lambda c: c.update(model_type="tipsv2_dpt"), "TIPSDPTHead"),
    ],
)
def test_checkpoints_that_do_not_fit_are_refused_by_name(
    snapshot, tmp_path, change, config_change, message
):
    directory = _damaged_copy(snapshot[0], tmp_path / "damaged", change, config_change)
    with pytest.raises(CheckpointError, match=message):
        build_task_from_hf_snapshot(TIPSModel, directory)


def test_missing_files_are_named(snapshot, tmp_path):
    directory = _damaged_copy(snapshot[0], tmp_path / "no_tokenizer")
    os.remove(os.path.join(directory, "tokenizer.model"))
    with pytest.raises(CheckpointError, match="no tokenizer.model"):
        build_task_from_hf_snapshot(TIPSModel, directory)
    directory = _damaged_copy(snapshot[0], tmp_path / "no_weights")
    os.remove(os.path.join(directory, "model.safetensors"))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        build_task_from_hf_snapshot(TIPSModel, directory)
    directory = _damaged_copy(snapshot[0], tmp_path / "truncated")
    path = os.path.join(directory, "model.safetensors")
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(CheckpointError, match="safetensors.*complete"):
        build_task_from_hf_snapshot(TIPSModel, directory)


def test_sharded_snapshots_load(snapshot, tmp_path):
    directory = tmp_path / "sharded"
    shutil.copytree(snapshot[0], directory)
    state = safetensors_numpy.load_file(directory / "model.safetensors")
    os.remove(directory / "model.safetensors")
    weight_map = {}
    for shard, prefix in (("model-00001-of-00002.safetensors", "vision"),
                          ("model-00002-of-00002.safetensors", "")):
        part = {k: v for k, v in state.items() if k.startswith(prefix) and k not in weight_map}
        safetensors_numpy.save_file(part, directory / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    sharded = build_task_from_hf_snapshot(TIPSModel, str(directory))
    whole = build_task_from_hf_snapshot(TIPSModel, snapshot[0])
    np.testing.assert_array_equal(sharded.encode_texts(TEXTS), whole.encode_texts(TEXTS))
