import re

import numpy as np
import sentencepiece as spm

from keras_tips.data import shapes
from keras_tips.data.vocabulary import shapes_vocabulary
from keras_tips.data.vocabulary import train_sentencepiece
from keras_tips.models.tips_tokenizer import TIPSTokenizer


def _prompts():
    return [p for name in shapes.SHAPE_CLASSES for p in shapes.zero_shot_prompts(name)]


def test_shapes_vocabulary_gives_a_word_the_same_piece_with_or_without_punctuation():
    proto = shapes_vocabulary(num_examples=300)
    processor = spm.SentencePieceProcessor(model_proto=proto)
    dataset = shapes.ShapesDataset("train", 300, 56)
    texts = _prompts()
    for index in range(len(dataset)):
        example = dataset[index]
        texts += [example["web_caption"], example["synthetic_caption"]]
    for text in texts:
        ids = processor.encode(text.lower())
        assert processor.unk_id() not in ids, text
        words = re.findall(r"\w+", text.lower())
        pieces = [p.lstrip("\u2581") for p in processor.id_to_piece(ids)]
        # Every word is one piece, and punctuation never joins a word.
        assert [p for p in pieces if p.isalpha()] == words, (text, pieces)
    # The class name of a prompt ending in a full stop is the caption's word.
    tokenizer = TIPSTokenizer(proto=proto, sequence_length=8)
    prompt, caption = np.asarray(tokenizer(["a circle.", "a circle"]))
    assert list(prompt[:2]) == list(caption[:2])
    assert prompt[2] != 0 and caption[2] == 0


def test_word_model_keeps_punctuation_attached():
    # Why the shapes vocabulary is not a word model: there "circle." and
    # "circle" are two unrelated pieces.
    texts = ["a red circle", "a blue circle.", "a circle."] * 10
    processor = spm.SentencePieceProcessor(
        model_proto=train_sentencepiece(texts, model_type="word")
    )
    assert processor.encode("a circle.", out_type=str) == ["\u2581a", "\u2581circle."]
    processor = spm.SentencePieceProcessor(
        model_proto=train_sentencepiece(texts, model_type="bpe")
    )
    assert processor.encode("a circle.", out_type=str) == ["\u2581a", "\u2581circle", "."]
