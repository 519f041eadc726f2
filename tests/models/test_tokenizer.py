import numpy as np
import pytest

from keras_tips import TIPSTokenizer
from tests.conftest import reference_dir
from tests.conftest import reference_golden


@pytest.fixture(scope="module")
def tokenizer():
    return TIPSTokenizer(
        proto=reference_dir("tips_tiny") + "/tokenizer.model", sequence_length=16
    )


def test_padding_flags_are_per_text_in_a_batch_with_a_truncated_text(tokenizer):
    golden = reference_golden("tips_tiny")
    texts = [str(t) for t in golden["texts"]]
    long_text = texts[3]
    ids, mask = tokenizer.tokenize_numpy(["two cows", long_text])
    # The truncated text fills every position; the short one is padded.
    assert mask[1].all()
    np.testing.assert_array_equal(ids[0], golden["text_ids"][1])
    np.testing.assert_array_equal(mask[0], golden["text_paddings"][1] == 0)
    assert not mask[0].all()


def test_lower_cases_ascii_only(tokenizer):
    upper, _ = tokenizer.tokenize_numpy(["A PHOTO OF A CAT"])
    lower, _ = tokenizer.tokenize_numpy(["a photo of a cat"])
    np.testing.assert_array_equal(upper, lower)
    # Non-ASCII letters are kept as they are, as tf.strings.lower does.
    import tensorflow as tf

    from keras_tips.models.tips_tokenizer import lower_ascii

    for text in ["ÉCOLE Straße", "ΑΒΓ abc XYZ"]:
        assert lower_ascii(text) == tf.strings.lower(text).numpy().decode("utf-8")
    assert lower_ascii("ÉA") == "Éa"


def test_tensorflow_path_matches_numpy_path(tokenizer):
    import tensorflow as tf

    texts = ["A photo of a CAT", "", "Holidays!", "ünïcödé ☃ text"]
    eager_ids, _ = tokenizer.tokenize_numpy(texts)
    graph = tf.function(lambda x: tokenizer(x))(tf.constant(texts))
    np.testing.assert_array_equal(graph.numpy(), eager_ids)
    np.testing.assert_array_equal(np.asarray(tokenizer(texts)), eager_ids)


def test_bad_texts_raise_clear_errors(tokenizer):
    with pytest.raises(ValueError, match="not a string"):
        tokenizer.tokenize_numpy(["ok", 3])
    with pytest.raises(ValueError, match="UTF-8"):
        tokenizer.tokenize_numpy([b"\xff\xfe"])
    with pytest.raises(ValueError, match="list of strings"):
        tokenizer.tokenize_numpy(5)


def test_rejects_a_model_without_pad_zero(tmp_path):
    import io

    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["the quick brown fox jumps over the lazy dog"] * 20),
        model_writer=buffer,
        vocab_size=29,
        character_coverage=1.0,
        pad_id=-1,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
    )
    with pytest.raises(ValueError, match="id 0"):
        TIPSTokenizer(proto=buffer.getvalue(), sequence_length=8)
