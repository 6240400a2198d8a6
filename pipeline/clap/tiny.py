"""Tiny, randomly initialised CLAP models — for tests and offline smoke runs ONLY.

Random weights: their scores mean nothing. They exist so every code path (tokenising,
batched log-mel, both backends' forward passes, saving and loading checkpoints) runs
offline in seconds. They are only ever built by calling these functions by name;
`load_scorer` never falls back to them. Checkpoint ids say what they are:
'tiny-random-hf-clap' and 'tiny-random-laion-clap'.

The tokenizer is a byte-level BPE (RoBERTa's scheme) trained in memory on a fixed
word list, so nothing is downloaded.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from pipeline.clap.config import ClapConfig
from pipeline.clap.laion_model import build_laion_model
from pipeline.clap.scorer import HfClapScorer, LaionClapScorer, resolve_device

TINY_HF_CHECKPOINT_ID = "tiny-random-hf-clap"
TINY_HF_FUSED_CHECKPOINT_ID = "tiny-random-hf-clap-fused"
TINY_LAION_CHECKPOINT_ID = "tiny-random-laion-clap"

_WORDS = (
    "a the of and in on with while then is are from near far loud quiet soft high low "
    "pitch sound sounds noise music voice speech man woman child people crowd talking "
    "dog barks bark cat meows meow bird birds chirp chirping sing singing cow moo horse "
    "neigh sheep bleat pig oink duck quack frog croak insect buzz bee lion roar wolf howl "
    "rain falls water stream wind blows thunder engine car idles truck train whistle "
    "siren horn bell rings piano guitar violin flute drum drums organ trumpet clock tick "
    "door slams footsteps keyboard typing phone vibrates beep alarm hum humming whoosh "
    "yes no unclear higher lower than before after beginning middle end throughout"
)


@functools.cache
def _tokenizer_object() -> Any:
    from tokenizers import ByteLevelBPETokenizer, processors

    bpe = ByteLevelBPETokenizer()
    corpus = [_WORDS, _WORDS.upper(), _WORDS.title()]
    bpe.train_from_iterator(
        corpus,
        vocab_size=512,
        min_frequency=1,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    bpe.post_processor = processors.RobertaProcessing(
        ("</s>", bpe.token_to_id("</s>")), ("<s>", bpe.token_to_id("<s>"))
    )
    return bpe._tokenizer


def build_tiny_tokenizer() -> Any:
    """A RoBERTa-style tokenizer with a few hundred tokens, built offline."""
    from transformers import RobertaTokenizerFast

    return RobertaTokenizerFast(
        tokenizer_object=_tokenizer_object().__class__.from_str(_tokenizer_object().to_str()),
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=77,
    )


def tiny_hf_model_config(vocab_size: int, fused: bool = False) -> Any:
    """A ClapConfig (transformers) with the real architecture at toy width and depth;
    `fused` enables the audio tower's feature fusion, as in laion/clap-htsat-fused."""
    from transformers import ClapConfig as HfClapConfig

    return HfClapConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 37,
            "max_position_embeddings": 80,
        },
        audio_config={
            "patch_embeds_hidden_size": 8,
            "hidden_size": 64,
            "depths": [1, 1, 1, 1],
            "num_attention_heads": [1, 1, 1, 1],
            "window_size": 8,
            "enable_fusion": fused,
        },
        projection_dim=512,
    )


def build_tiny_hf_parts(
    seed: int = 0, model_config: Any = None, *, fused: bool = False
) -> tuple[Any, Any]:
    """(ClapModel with random weights, ClapProcessor) — what `save_pretrained` would write.

    The feature extractor truncates as the published checkpoints' do: `rand_trunc` for
    unfused models, `fusion` for fused ones."""
    from transformers import ClapFeatureExtractor, ClapModel, ClapProcessor

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    model = ClapModel(model_config or tiny_hf_model_config(len(tokenizer), fused)).eval()
    truncation = "fusion" if model.config.audio_config.enable_fusion else "rand_trunc"
    processor = ClapProcessor(
        feature_extractor=ClapFeatureExtractor(truncation=truncation), tokenizer=tokenizer
    )
    return model, processor


def build_tiny_hf_clap(
    seed: int = 0, config: ClapConfig | None = None, *, fused: bool = False
) -> HfClapScorer:
    """For tests and offline smoke runs; random weights; checkpoint_id='tiny-random-hf-clap'
    (or 'tiny-random-hf-clap-fused')."""
    checkpoint = TINY_HF_FUSED_CHECKPOINT_ID if fused else TINY_HF_CHECKPOINT_ID
    config = config or ClapConfig(backend="hf", checkpoint=checkpoint, device="cpu")
    model, processor = build_tiny_hf_parts(seed, fused=fused)
    return HfClapScorer(config, model, processor, checkpoint, resolve_device(config.device))


def save_tiny_hf_clap(directory: Path, seed: int = 0, *, fused: bool = False) -> Path:
    """Write a tiny random ClapModel + processor as a local checkpoint directory."""
    model, processor = build_tiny_hf_parts(seed, fused=fused)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


TINY_LAION_TEXT_CONFIG: dict[str, Any] = {
    # laion-clap's projection expects a 768-wide RoBERTa; depth and heads are toy-sized.
    "hidden_size": 768,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 80,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
}


def build_tiny_laion_parts(seed: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """(laion-clap CLAP model with random weights, tokenizer, text config).

    The audio tower is laion-clap's real HTSAT-tiny (its sizes are fixed by the package).
    """
    tokenizer = build_tiny_tokenizer()
    text_config = {**TINY_LAION_TEXT_CONFIG, "vocab_size": len(tokenizer)}
    torch.manual_seed(seed)
    model = build_laion_model(text_config, "HTSAT-tiny").eval()
    return model, tokenizer, text_config


def build_tiny_laion_clap(seed: int = 0, config: ClapConfig | None = None) -> LaionClapScorer:
    """For tests and offline smoke runs; random weights; checkpoint_id='tiny-random-laion-clap'."""
    config = config or ClapConfig(
        backend="laion", checkpoint=TINY_LAION_CHECKPOINT_ID, device="cpu"
    )
    model, tokenizer, _ = build_tiny_laion_parts(seed)
    return LaionClapScorer(
        config, model, tokenizer, TINY_LAION_CHECKPOINT_ID, resolve_device(config.device)
    )


def save_tiny_laion_clap(path: Path, seed: int = 0, scorer: LaionClapScorer | None = None) -> Path:
    """Write a tiny random model (`scorer`'s, else a new one) as a LAION-format .pt file.

    Same layout as LAION's checkpoints (`state_dict` with DataParallel 'module.' keys and
    the old `position_ids` buffer). The tokenizer goes beside it (`<stem>_tokenizer/`);
    the file's `forge` entry names it and the text tower's shape, which LAION's own
    checkpoints do not need (their tower is roberta-base).
    """
    if scorer is None:
        model, tokenizer, text_config = build_tiny_laion_parts(seed)
    else:
        model, tokenizer = scorer.model, scorer.tokenizer
        text_config = {**TINY_LAION_TEXT_CONFIG, "vocab_size": len(tokenizer)}
    tokenizer_dir = path.with_name(f"{path.stem}_tokenizer")
    tokenizer.save_pretrained(tokenizer_dir)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(
        text_config["max_position_embeddings"]
    )[None]
    torch.save(
        {
            "epoch": 0,
            "state_dict": state,
            "forge": {"text_config": text_config, "tokenizer": tokenizer_dir.name},
        },
        path,
    )
    return path
