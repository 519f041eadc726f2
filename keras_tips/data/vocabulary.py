"""SentencePiece vocabularies for datasets that ship without one.

The released TIPS tokenizer has 32,000 pieces; a model trained from scratch
on the embedded shapes dataset needs only the few dozen words its captions
use. `train_sentencepiece` builds a model with the TIPS conventions (pad id 0,
unk id 1, no BOS/EOS, lower-case text) from an iterable of texts, with the
`sentencepiece` library itself.
"""

import io
import os
import re

import sentencepiece as spm

from keras_tips.atomic_files import write_atomically

from keras_tips.models.tips_tokenizer import lower_ascii


def train_sentencepiece(texts, vocabulary_size=None, model_type="bpe"):
    """Trains a SentencePiece model with the TIPS special-token layout.

    Args:
        texts: iterable of str (lower-cased here).
        vocabulary_size: int or None. None makes every distinct word one
            piece: for `"word"`, the words plus the special and character
            pieces; for `"bpe"`, enough merges to spell every word (run of
            letters or digits) as one piece. Required for `"unigram"`.
        model_type: `"bpe"` (the default), `"unigram"` or `"word"`. A
            `"word"` model keeps punctuation attached (`"circle."` and
            `"circle"` are unrelated pieces, so a zero-shot prompt ending in
            a full stop misses the word its captions taught); `"bpe"` and
            `"unigram"` split it off.

    Returns:
        The serialized model (bytes), ready for `TIPSTokenizer(proto=...)`.
    """
    texts = [lower_ascii(t) for t in texts if t]
    if not texts:
        raise ValueError("Cannot build a vocabulary from no text.")
    if vocabulary_size is None:
        characters = {c for t in texts for c in t if not c.isspace()}
        if model_type == "word":
            words = {w for t in texts for w in t.split()}
            vocabulary_size = len(words) + len(characters) + 3
        elif model_type == "bpe":
            # Each merge joins two pieces, so a word of n characters needs at
            # most n - 1 of them: an upper bound (`hard_vocab_limit=False`
            # lets the trainer stop once no pair is left to merge).
            words = {w for t in texts for w in re.findall(r"\w+", t)}
            merges = sum(len(w) - 1 for w in words)
            vocabulary_size = len(characters) + merges + 3
        else:
            raise ValueError(
                f"`vocabulary_size` is required for model_type={model_type!r}."
            )
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=buffer,
        vocab_size=int(vocabulary_size),
        model_type=model_type,
        character_coverage=1.0,
        pad_id=0,
        unk_id=1,
        bos_id=-1,
        eos_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return buffer.getvalue()


def shapes_vocabulary(path=None, num_examples=2000, image_size=56, seed=0):
    """The vocabulary of the embedded shapes dataset: one piece per word.

    Built from the captions of `num_examples` training scenes, the zero-shot
    prompts and every class, colour, size and region word, so no caption or
    prompt of the dataset maps to the unknown piece (the shorter caption
    granularities of `synthetic_captions` use the same words). Punctuation is a piece
    of its own (a BPE model), so the "circle" of "a circle." in a zero-shot
    prompt is the "circle" of "a red circle" in a caption; a word-level model
    would give "circle." a piece of its own, seen in training only at the
    end of a synthetic caption.

    Args:
        path: optional file to write the model to (and to read it from if it
            exists).

    Returns:
        The serialized SentencePiece model (bytes).
    """
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            return f.read()
    from keras_tips.data import shapes

    dataset = shapes.ShapesDataset("train", num_examples, image_size, seed)
    texts = []
    for index in range(num_examples):
        example = dataset[index]
        texts += [example["web_caption"], example["synthetic_caption"]]
    for name in shapes.SHAPE_CLASSES:
        texts += list(shapes.zero_shot_prompts(name))
    words = (
        list(shapes.COLOUR_NAMES)
        + list(shapes.SIZES)
        + list(shapes.REGIONS)
        + list(shapes.GENERIC_CAPTIONS)
    )
    texts.append(" ".join(words))
    model = train_sentencepiece(texts, model_type="bpe")
    if path:
        # Atomic, so a run killed here never leaves a truncated vocabulary
        # for the next run to read.
        write_atomically(path, model)
    return model
