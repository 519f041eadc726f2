"""SentencePiece tokenizer of the TIPS text tower."""

import keras
import numpy as np
from keras_hub.tokenizers import SentencePieceTokenizer

from keras_tips.models.tips_backbone import TIPSBackbone

# The official pipeline lower-cases with `tf.strings.lower`, which only maps
# ASCII letters; Python's `str.lower` would also change other scripts, so both
# paths here use this ASCII-only table.
_ASCII_LOWER = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)


def lower_ascii(text):
    """Lower-cases the ASCII letters of `text` and nothing else."""
    return text.translate(_ASCII_LOWER)


@keras.saving.register_keras_serializable(package="keras_tips")
class TIPSTokenizer(SentencePieceTokenizer):
    """TIPS tokenizer: ASCII lower-casing + SentencePiece, padded with id 0.

    No BOS/EOS is added. Texts longer than `sequence_length` pieces are
    truncated; shorter ones are padded with id 0 (SentencePiece never emits
    id 0 for real text, so `token_ids != 0` is the per-text padding mask —
    unlike the official wrapper, which marks no padding at all in a batch that
    contains one truncated text).

    Args:
        proto: path to, or bytes of, a SentencePiece model (pad id 0).
        sequence_length: int. Length of every output sequence (64).
        **kwargs: standard `keras_hub.tokenizers.SentencePieceTokenizer`
            arguments.

    Example:
    ```python
    tokenizer = TIPSTokenizer(proto="tokenizer.model", sequence_length=64)
    token_ids, padding_mask = tokenizer.tokenize_numpy(["A photo of a cat"])
    ```
    """

    backbone_cls = TIPSBackbone

    def __init__(self, proto=None, sequence_length=64, **kwargs):
        kwargs.pop("add_bos", None)
        kwargs.pop("add_eos", None)
        super().__init__(
            proto=proto,
            sequence_length=sequence_length,
            add_bos=False,
            add_eos=False,
            **kwargs,
        )

    def set_proto(self, proto):
        try:
            super().set_proto(proto)
        except (ValueError, ImportError, OSError):
            raise
        except Exception as error:
            # A damaged model file otherwise fails deep inside the
            # SentencePiece op of TensorFlow Text.
            what = (
                f"file {proto!r}"
                if isinstance(proto, str) and len(proto) <= 4096
                else "model"
            )
            detail = str(error).strip().splitlines()
            raise ValueError(
                f"The SentencePiece {what} could not be read: it is not a "
                f"valid SentencePiece model ({type(error).__name__}"
                + (f": {detail[0][:200]}" if detail else "")
                + "). Is the file complete?"
            ) from error
        if proto is not None and self._sentence_piece_spm.vocab_size() < 1:
            raise ValueError(
                "The SentencePiece model is empty (no pieces). Is the file "
                "complete?"
            )
        if proto is not None and self._sentence_piece_spm.pad_id() != 0:
            raise ValueError(
                "The SentencePiece model must have '<pad>' as id 0, as the "
                "TIPS tokenizer does."
            )

    def tokenize(self, inputs):
        if self._use_tf_workflow():
            import tensorflow as tf

            inputs = tf.strings.lower(tf.convert_to_tensor(inputs))
        else:
            inputs = _lower_python_inputs(inputs)
        return super().tokenize(inputs)

    def tokenize_numpy(self, texts):
        """Tokenises a list of strings with NumPy outputs (no TensorFlow).

        This is the path for data pipelines (grain workers) and eager use.

        Args:
            texts: a string or a list of strings.

        Returns:
            `(token_ids, padding_mask)`: int32 (B, sequence_length) and bool
            (B, sequence_length), True for real tokens.
        """
        texts = check_texts(texts)
        self._maybe_initialized_spm()
        pieces = self._sentence_piece_spm.Encode(
            [lower_ascii(text) for text in texts],
            add_bos=False,
            add_eos=False,
        )
        length = self.sequence_length
        token_ids = np.zeros((len(texts), length), dtype="int32")
        for row, ids in enumerate(pieces):
            ids = ids[:length]
            token_ids[row, : len(ids)] = ids
        return token_ids, token_ids != 0


def check_texts(texts):
    """Validates user texts: a string or a sequence of strings.

    Returns:
        A list of `str`.
    """
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    try:
        texts = list(texts)
    except TypeError:
        raise ValueError(
            f"Expected a string or a list of strings. Received: {texts!r}"
        ) from None
    result = []
    for index, text in enumerate(texts):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"Text {index} is bytes that are not valid UTF-8 ({error})."
                ) from None
        if not isinstance(text, str):
            raise ValueError(
                f"Text {index} is a {type(text).__name__}, not a string. "
                "Pass a list of str."
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(
                f"Text {index} is not valid Unicode text ({error}); lone "
                "surrogates usually come from bytes decoded with "
                "'surrogateescape'."
            ) from None
        result.append(text)
    return result


def _lower_python_inputs(inputs):
    if isinstance(inputs, (str, bytes)):
        return lower_ascii(check_texts(inputs)[0])
    return [lower_ascii(text) for text in check_texts(inputs)]
