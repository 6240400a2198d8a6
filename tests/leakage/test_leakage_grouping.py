"""Sound grouping: each link kind, transitivity, and the bounded (LSH) comparisons."""

from __future__ import annotations

import json

import numpy as np

from pipeline.tasks.common.sound_groups import (
    GroupingSettings,
    clip_identities,
    embedding_pairs,
    fingerprint_pairs,
    group_clips,
)


def clip(clip_id: str, source: str = "x", split: str | None = None, **fields) -> dict:
    extra = fields.pop("extra", None)
    return {
        "clip_id": clip_id,
        "source": source,
        "split": split,
        "audio_path": fields.pop("audio_path", clip_id),
        "url": fields.pop("url", None),
        "extra": json.dumps(extra) if extra is not None else None,
    }


def test_identities_from_metadata() -> None:
    assert clip_identities(clip("c", "clotho", extra={"sound_id": "4012"})) == [
        ("clotho_file", "clotho-file:c"),
        ("freesound_id", "freesound:4012"),
    ]
    assert clip_identities(clip("l", "laion630k", extra={"freesound_id": "4012"})) == [
        ("freesound_id", "freesound:4012")
    ]
    url = "https://freesound.org/people/rec/sounds/4012/download/"
    assert clip_identities(clip("u", url=url)) == [("freesound_id", "freesound:4012")]
    audiocaps = clip("a", "audiocaps", extra={"youtube_id": "1ZlcTANOyWE", "start_time": "30"})
    assert clip_identities(audiocaps) == [("youtube_segment", "youtube:1ZlcTANOyWE@30")]
    from_url = clip("y", url="https://www.youtube.com/watch?v=1ZlcTANOyWE&t=30s")
    assert clip_identities(from_url) == [("youtube_segment", "youtube:1ZlcTANOyWE@30")]
    other_start = clip("z", url="https://www.youtube.com/watch?v=1ZlcTANOyWE&t=40s")
    assert clip_identities(other_start) == [("youtube_segment", "youtube:1ZlcTANOyWE@40")]
    aqa = clip("q", "clotho-aqa", audio_path="Typing office.wav")
    assert clip_identities(aqa) == [("clotho_file", "clotho-file:Typing office.wav")]
    assert clip_identities({**clip("bad"), "extra": "{not json"}) == []


def test_metadata_links_merge_transitively_and_name_the_group() -> None:
    clips = [
        clip("clotho:eval/Gulls.wav", "clotho", "test", extra={"sound_id": "7"}),
        clip("laion630k:1", "laion630k", "train", extra={"freesound_id": "7"}),
        clip("clotho-aqa:Gulls.wav", "clotho-aqa", "train", audio_path="Gulls.wav"),
        clip("audiocaps:a", "audiocaps", "train", extra={"youtube_id": "v" * 11, "start_time": 0}),
        clip("laion630k:2", "laion630k", "train", url="https://youtu.be/vvvvvvvvvvv?t=0"),
        clip("laion630k:3", "laion630k", "train", extra={"freesound_id": "8"}),
    ]
    groups = group_clips(clips)
    assert groups.group_of["laion630k:1"] == "clotho-aqa:Gulls.wav"  # smallest clip_id
    assert groups.group_of["clotho:eval/Gulls.wav"] == "clotho-aqa:Gulls.wav"
    assert groups.linked_by["clotho-aqa:Gulls.wav"] == {"clotho_file"}
    assert groups.linked_by["clotho:eval/Gulls.wav"] == {"clotho_file", "freesound_id"}
    assert groups.group_of["laion630k:2"] == "audiocaps:a"
    assert groups.linked_by["laion630k:2"] == {"youtube_segment"}
    assert groups.group_of["laion630k:3"] == "laion630k:3"
    assert "laion630k:3" not in groups.linked_by
    assert len(set(groups.group_of.values())) == 3


def random_hex(rng: np.random.Generator) -> str:
    return np.packbits(rng.integers(0, 2, 256).astype(np.uint8)).tobytes().hex()


def flip(bits_hex: str, positions: list[int]) -> str:
    value = int(bits_hex, 16)
    for p in positions:
        value ^= 1 << int(p)
    return f"{value:064x}"


def test_fingerprint_links_near_copies_only_among_thousands() -> None:
    rng = np.random.default_rng(0)
    prints = {f"c{i:04d}": random_hex(rng) for i in range(3000)}
    prints["copy-close"] = flip(prints["c0001"], list(rng.choice(256, 30, replace=False)))
    prints["copy-far"] = flip(prints["c0002"], list(rng.choice(256, 70, replace=False)))
    assert fingerprint_pairs(prints, max_bits=51, max_bucket=64) == [("c0001", "copy-close")]
    clips = [clip(c) for c in prints]
    groups = group_clips(clips, fingerprints=prints)
    assert groups.group_of["copy-close"] == "c0001"
    assert groups.linked_by["c0001"] == {"fingerprint"}
    assert groups.group_of["copy-far"] == "copy-far"


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def test_embedding_links_near_duplicates_above_the_threshold() -> None:
    rng = np.random.default_rng(1)
    vectors = {f"e{i:04d}": unit(rng.standard_normal(512)) for i in range(2000)}
    base = vectors["e0005"]
    noise = unit(rng.standard_normal(512) - base * (rng.standard_normal(512) @ base))
    vectors["near"] = unit(base + 0.1 * noise)  # cosine ≈ 0.995
    vectors["similar"] = unit(base + 0.5 * noise)  # cosine ≈ 0.89: alike, not the same
    assert embedding_pairs(vectors, 0.98, 64) == [("e0005", "near")]
    groups = group_clips([clip(c) for c in vectors], embeddings=vectors)
    assert groups.group_of["near"] == "e0005" and groups.linked_by["near"] == {"embedding"}
    assert groups.group_of["similar"] == "similar"
    off = group_clips(
        [clip(c) for c in vectors],
        embeddings=vectors,
        settings=GroupingSettings(embedding_min_cosine=None),
    )
    assert off.group_of["near"] == "near"


def test_an_embedding_space_where_everything_is_alike_links_nothing() -> None:
    rng = np.random.default_rng(2)
    shared = rng.standard_normal(512)
    vectors = {f"e{i}": unit(shared + 0.05 * rng.standard_normal(512)) for i in range(50)}
    groups = group_clips([clip(c) for c in vectors], embeddings=vectors)
    assert len(set(groups.group_of.values())) == 50
    assert "skipped" in groups.notes["embedding_links"]
