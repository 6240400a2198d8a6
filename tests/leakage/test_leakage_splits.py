"""One split per sound group: protected sets, the most protected member, seeded hashes."""

from __future__ import annotations

from pipeline.tasks.common.base import ItemDraft
from pipeline.tasks.common.splits import (
    CROSS_CORPUS_LEAK,
    ProtectedSet,
    SplitAssigner,
    SplitPolicy,
    reject_cross_split_items,
)

CLIPS = [
    {
        "clip_id": "clotho:eval.wav",
        "source": "clotho",
        "split": "test",
        "source_split": "evaluation",
    },
    {"clip_id": "clotho:val.wav", "source": "clotho", "split": "dev", "source_split": "validation"},
    {
        "clip_id": "clotho:dev.wav",
        "source": "clotho",
        "split": "train",
        "source_split": "development",
    },
    {"clip_id": "laion630k:1", "source": "laion630k", "split": "train", "source_split": "train"},
    {"clip_id": "laion630k:2", "source": "laion630k", "split": "train", "source_split": "train"},
    {"clip_id": "laion630k:3", "source": "laion630k", "split": "train", "source_split": "train"},
    {"clip_id": "laion630k:t", "source": "laion630k", "split": "test", "source_split": "test"},
    *({"clip_id": f"other:{i}", "source": "other", "split": None} for i in range(400)),
]


def test_a_protected_evaluation_clip_pulls_its_whole_group_into_test() -> None:
    groups = {"laion630k:1": "clotho:eval.wav", "clotho:eval.wav": "clotho:eval.wav"}
    for seed in range(20):
        assigner = SplitAssigner(CLIPS, SplitPolicy(seed=seed), groups)
        assert assigner.clip_split("laion630k:1") == "test"
        assert assigner.pair_split("laion630k:1", "clotho:eval.wav") == "test"
    # without the group the same LAION clip follows its own train split (train or carved dev)
    alone = {SplitAssigner(CLIPS, SplitPolicy(seed=s)).clip_split("laion630k:1") for s in range(20)}
    assert alone <= {"train", "dev"}


def test_protected_sets_are_configurable_by_source_split_name() -> None:
    groups = {"clotho:val.wav": "g", "laion630k:2": "g", "other:1": "g"}
    default = SplitAssigner(CLIPS, SplitPolicy(), groups)
    assert default.clip_split("laion630k:2") == "dev"  # most protected member: dev
    protected = SplitPolicy(
        protected_sets=(
            *SplitPolicy().protected_sets,
            ProtectedSet(source="clotho", split="validation"),
        )
    )
    moved = SplitAssigner(CLIPS, protected, groups)
    assert {moved.clip_split(c) for c in groups} == {"test"}
    assert moved.clip_split("clotho:eval.wav") == "test"
    nothing = SplitAssigner(
        CLIPS, SplitPolicy(protected_sets=()), {"laion630k:3": "clotho:eval.wav"}
    )
    assert nothing.clip_split("laion630k:3") == "test"  # a source's test split still wins


def test_train_groups_stay_train_when_a_member_source_has_its_own_dev_split() -> None:
    for seed in range(30):
        groups = {"laion630k:1": "clotho:dev.wav", "laion630k:2": "clotho:dev.wav"}
        assigner = SplitAssigner(CLIPS, SplitPolicy(seed=seed), groups)
        assert {assigner.clip_split(c) for c in [*groups, "clotho:dev.wav"]} == {"train"}


def test_unsplit_groups_hash_as_a_unit_near_the_ratios() -> None:
    groups = {f"other:{i}": f"other:{i - i % 2}" for i in range(400)}
    assigner = SplitAssigner(CLIPS, SplitPolicy(seed=5), groups)
    for i in range(0, 400, 2):
        assert assigner.clip_split(f"other:{i}") == assigner.clip_split(f"other:{i + 1}")
    splits = [assigner.clip_split(f"other:{i}") for i in range(0, 400, 2)]
    assert 130 <= splits.count("train") <= 185 and splits.count("test") >= 5
    other_seed = SplitAssigner(CLIPS, SplitPolicy(seed=6), groups)
    assert splits != [other_seed.clip_split(f"other:{i}") for i in range(0, 400, 2)]


def test_items_whose_sounds_sit_in_another_split_are_rejected_not_dropped() -> None:
    assigner = SplitAssigner(CLIPS, SplitPolicy(), {"laion630k:1": "clotho:eval.wav"})
    drafts = [
        ItemDraft(split="train", generation_key="a", clip_ids=["laion630k:1"]),
        ItemDraft(split="test", generation_key="b", clip_ids=["laion630k:1", "clotho:eval.wav"]),
        ItemDraft(split="test", generation_key="c", clip_ids=["clotho:eval.wav", "clotho:val.wav"]),
        ItemDraft(split="wiki", generation_key="d"),
    ]
    assert reject_cross_split_items(assigner, drafts) == 2
    assert [d.reasons for d in drafts] == [[CROSS_CORPUS_LEAK], [], [CROSS_CORPUS_LEAK], []]
