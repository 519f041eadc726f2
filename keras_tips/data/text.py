"""A plain SentencePiece text tokenizer callable for the input pipeline.

Same output as `TIPSTokenizer.tokenize_numpy` (ASCII lower-casing, no
BOS/EOS, pad id 0, truncation), without Keras or TensorFlow: for scripts and
benchmarks that only need the data pipeline. In training code, pass
`TIPSTokenizer(...).tokenize_numpy` instead.
"""

import numpy as np

_ASCII_LOWER = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)


class SentencePieceTextTokenizer:
    """`texts -> (token_ids int32 (B, T), padding_mask bool (B, T))`.

    Args:
        model_file: path of a SentencePiece model whose pad id is 0.
        sequence_length: int. T.

    Example:
    ```python
    tokenizer = SentencePieceTextTokenizer("tokenizer.model", 64)
    token_ids, padding_mask = tokenizer(["a red circle in the center"])
    ```
    """

    def __init__(self, model_file, sequence_length=64):
        import sentencepiece

        self.model_file = str(model_file)
        self.sequence_length = int(sequence_length)
        self._processor = sentencepiece.SentencePieceProcessor(
            model_file=self.model_file
        )
        if self._processor.pad_id() != 0:
            raise ValueError(
                f"The SentencePiece model {self.model_file} must have pad id 0."
            )

    def __getstate__(self):
        return {
            "model_file": self.model_file,
            "sequence_length": self.sequence_length,
        }

    def __setstate__(self, state):
        self.__init__(state["model_file"], state["sequence_length"])

    def __call__(self, texts):
        texts = [text.translate(_ASCII_LOWER) for text in texts]
        pieces = self._processor.Encode(texts, add_bos=False, add_eos=False)
        token_ids = np.zeros((len(texts), self.sequence_length), dtype=np.int32)
        for row, ids in enumerate(pieces):
            ids = ids[: self.sequence_length]
            token_ids[row, : len(ids)] = ids
        return token_ids, token_ids != 0
