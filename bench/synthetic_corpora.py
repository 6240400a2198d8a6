"""Synthetic corpora in the published file layouts the loaders in pipeline/sources read.

Sizes at `fraction` 1 are the published ones (facts relied upon, from the corpora's own
releases):

* AudioCaps v1 CSVs: train 49,838 rows (one caption per clip), val 2,475 and test 4,875
  rows (five captions per clip): `audiocap_id,youtube_id,start_time,caption`, UTF-8.
* Clotho v2.1: development 3,839, validation 1,045, evaluation 1,045 clips, five captions
  each; `clotho_captions_<split>.csv` + `clotho_metadata_<split>.csv`, ISO-8859-1.
* Clotho-AQA: 1,991 clips (train 1,174, val 344, test 473), six questions per clip and
  three annotator answers per question: `clotho_aqa_<split>.csv` with
  `file_name,QuestionText,answer,confidence`, latin-1. Its files are Clotho files.
* LAION-Audio-630K (Freesound part): 633,526 clips in webdataset shards of 512, here
  metadata only (`<id>.json` members, built by bench/ingest.py's `build_shards`), the
  shards under `train/` and (the last tenth) `test/` as the release's folders.

Every other fraction multiplies the row counts (at least one clip per split). Captions are
drawn from a seeded vocabulary of sound events (most named by the shipped ReasonAQA
lexicon, some not), actions, places and connectors, so the captions of one clip agree
with each other and differ from other clips': dedup, distractor pools, difference pairs
and entailment behave as on real data rather than on one repeated sentence. Clotho-AQA
questions ask about presence, counts and positions of those events (80 % of answers
unanimous, the rest 2-1 or, on open questions, three-way ties), and every twentieth
Clotho-AQA clip is a file of another Clotho split than its own, so the vote, the
`audio_split_conflict` rule and the sound groups that link the two corpora by file name
all have work to do. The LAION records come from bench/ingest.py unchanged: titles and
tags from 15 common sound words and no animal sound words, so the offline animal rule
declines nearly every LAION clip (the task then yields mostly declined rows plus its
template wiki items). No audio is written: no stage measured here decodes audio.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
from pathlib import Path

from pydantic import BaseModel

AUDIOCAPS_ROWS = {"train": 49_838, "val": 2_475, "test": 4_875}
AUDIOCAPS_CAPTIONS_PER_CLIP = {"train": 1, "val": 5, "test": 5}
CLOTHO_CLIPS = {"development": 3_839, "validation": 1_045, "evaluation": 1_045}
CLOTHO_AQA_CLIPS = {"train": 1_174, "val": 344, "test": 473}
CLOTHO_OF_AQA_SPLIT = {"train": "development", "val": "validation", "test": "evaluation"}
LAION_CLIPS = 633_526
LAION_TEST_SHARE = 0.1
COMPLETE_MARKER = ".complete.json"

# (noun, third person, progressive, base verb): one sound event, phrased several ways.
EVENTS: tuple[tuple[str, str, str, str], ...] = (
    ("dog", "barks", "barking", "bark"),
    ("bird", "chirps", "chirping", "chirp"),
    ("rooster", "crows", "crowing", "crow"),
    ("cat", "meows", "meowing", "meow"),
    ("owl", "hoots", "hooting", "hoot"),
    ("goat", "bleats", "bleating", "bleat"),
    ("seagull", "squawks", "squawking", "squawk"),
    ("baby", "cries", "crying", "cry"),
    ("crowd", "cheers", "cheering", "cheer"),
    ("man", "speaks", "speaking", "speak"),
    ("woman", "talks", "talking", "talk"),
    ("person", "walks", "walking", "walk"),
    ("typist", "types", "typing", "type"),
    ("hammer", "bangs", "banging", "bang"),
    ("drill", "whines", "whining", "whine"),
    ("kettle", "whistles", "whistling", "whistle"),
    ("faucet", "runs", "running", "run"),
    ("rain", "falls", "falling", "fall"),
    ("thunder", "rumbles", "rumbling", "rumble"),
    ("wind", "blows", "blowing", "blow"),
    ("wave", "crashes", "crashing", "crash"),
    ("bell", "rings", "ringing", "ring"),
    ("clock", "ticks", "ticking", "tick"),
    ("fan", "hums", "humming", "hum"),
    ("motorcycle", "accelerates", "accelerating", "accelerate"),
    ("engine", "idles", "idling", "idle"),
    ("horn", "honks", "honking", "honk"),
    ("siren", "wails", "wailing", "wail"),
    ("helicopter", "flies", "flying", "fly"),
    ("train", "passes", "passing", "pass"),
    ("car", "drives", "driving", "drive"),
    ("door", "creaks", "creaking", "creak"),
    ("machine", "whirs", "whirring", "whir"),
    ("paper", "crumples", "crumpling", "crumple"),
    ("saw", "cuts", "cutting", "cut"),
    ("guitar", "plays", "playing", "play"),
    ("piano", "plays", "playing", "play"),
    ("frog", "croaks", "croaking", "croak"),
)
MASS_NOUNS = frozenset({"rain", "thunder", "wind", "paper"})
ADVERBS = ("", "", "loudly", "softly", "repeatedly", "in the distance", "nearby", "briefly")
PLACES = (
    "",
    "",
    "",
    "outside",
    "in a small room",
    "on a busy street",
    "in a park",
    "near a river",
    "in a large hall",
    "in the background",
)
CONNECTORS = (" while ", " and ", " as ", " and then ", " before ")
POSITIONS = ("beginning", "middle", "end", "throughout")
COUNTS = ("one", "two", "three", "four", "five", "many")
LICENSES = (
    "http://creativecommons.org/licenses/by/3.0/",
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "http://creativecommons.org/licenses/by-nc/3.0/",
)


class CorpusSizes(BaseModel):
    """Clips (and rows) per split of each corpus at one size; what the loaders must yield."""

    audiocaps_rows: dict[str, int]
    audiocaps_clips: dict[str, int]
    clotho_clips: dict[str, int]
    clotho_aqa_clips: dict[str, int]
    laion_clips: int

    def clips(self, source: str) -> int:
        return {
            "audiocaps": sum(self.audiocaps_clips.values()),
            "clotho": sum(self.clotho_clips.values()),
            "clotho-aqa": sum(self.clotho_aqa_clips.values()),
            "laion630k": self.laion_clips,
        }[source]


def corpus_sizes(fraction: float, laion_fraction: float) -> CorpusSizes:
    """Row and clip counts at `fraction` of the published sizes (LAION at `laion_fraction`)."""
    ac_clips = {
        split: max(1, round(rows * fraction / AUDIOCAPS_CAPTIONS_PER_CLIP[split]))
        for split, rows in AUDIOCAPS_ROWS.items()
    }
    return CorpusSizes(
        audiocaps_rows={s: n * AUDIOCAPS_CAPTIONS_PER_CLIP[s] for s, n in ac_clips.items()},
        audiocaps_clips=ac_clips,
        clotho_clips={s: max(1, round(n * fraction)) for s, n in CLOTHO_CLIPS.items()},
        clotho_aqa_clips={s: max(1, round(n * fraction)) for s, n in CLOTHO_AQA_CLIPS.items()},
        laion_clips=max(1, round(LAION_CLIPS * laion_fraction)),
    )


# ---- captions -------------------------------------------------------------------------


def event_phrase(event: tuple[str, str, str, str], rng: random.Random) -> str:
    noun, third, progressive, _ = event
    subject = noun if noun in MASS_NOUNS else rng.choice(("a ", "the ", "a ")) + noun
    verb = rng.choice((third, f"is {progressive}", third))
    adverb = rng.choice(ADVERBS)
    return " ".join(part for part in (subject, verb, adverb) if part)


def caption(events: list[tuple[str, str, str, str]], rng: random.Random) -> str:
    """One caption naming `events` in a varied order and wording."""
    order = events[:]
    rng.shuffle(order)
    text = event_phrase(order[0], rng)
    for event in order[1:]:
        text += rng.choice(CONNECTORS) + event_phrase(event, rng)
    place = rng.choice(PLACES)
    text = f"{text} {place}" if place else text
    return text[0].upper() + text[1:]


def clip_events(rng: random.Random) -> list[tuple[str, str, str, str]]:
    return rng.sample(EVENTS, rng.choice((1, 2, 2, 3)))


def youtube_id(index: int) -> str:
    """An 11-character id in YouTube's alphabet, fixed by the clip's index."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    digest = hashlib.sha256(f"audiocaps{index}".encode()).digest()
    return "".join(alphabet[b % 64] for b in digest[:11])


def clotho_file_name(split: str, index: int) -> str:
    """A Clotho-like file name (words, spaces, an occasional latin-1 letter)."""
    rng = random.Random(f"clotho-name-{split}-{index}")
    noun = rng.choice(EVENTS)[0]
    words = [noun.capitalize(), rng.choice(("ambience", "recording", "close", "field", "café"))]
    return f"{' '.join(words)} {split[:3]}{index:05d}.wav"


# ---- writers --------------------------------------------------------------------------


def write_audiocaps(folder: Path, sizes: CorpusSizes, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"audiocaps-{seed}")
    caption_id = 1
    clip_index = 0
    for split, clips in sizes.audiocaps_clips.items():
        per_clip = AUDIOCAPS_CAPTIONS_PER_CLIP[split]
        with open(folder / f"{split}.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("audiocap_id", "youtube_id", "start_time", "caption"))
            for _ in range(clips):
                clip_index += 1
                ytid, start = youtube_id(clip_index), rng.choice((0, 10, 20, 30, 40, 50))
                events = clip_events(rng)
                for _ in range(per_clip):
                    # AudioCaps captions carry no final period.
                    writer.writerow((caption_id, ytid, start, caption(events, rng)))
                    caption_id += 1


def write_clotho(folder: Path, sizes: CorpusSizes, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"clotho-{seed}")
    sound_id = 100_000
    for split, clips in sizes.clotho_clips.items():
        captions_path = folder / f"clotho_captions_{split}.csv"
        metadata_path = folder / f"clotho_metadata_{split}.csv"
        with (
            open(captions_path, "w", encoding="iso-8859-1", newline="") as captions_file,
            open(metadata_path, "w", encoding="iso-8859-1", newline="") as metadata_file,
        ):
            captions_writer = csv.writer(captions_file)
            metadata_writer = csv.writer(metadata_file)
            captions_writer.writerow(("file_name", *(f"caption_{n}" for n in range(1, 6))))
            metadata_writer.writerow(
                (
                    "file_name",
                    "keywords",
                    "sound_id",
                    "sound_link",
                    "start_end_samples",
                    "manufacturer",
                    "license",
                )
            )
            for index in range(clips):
                name = clotho_file_name(split, index)
                events = clip_events(rng)
                captions_writer.writerow((name, *(caption(events, rng) + "." for _ in range(5))))
                sound_id += 1
                user = f"recordist{rng.randrange(2_000)}"
                metadata_writer.writerow(
                    (
                        name,
                        ";".join([e[0] for e in events] + [rng.choice(PLACES[3:]).split()[-1]]),
                        sound_id,
                        f"https://freesound.org/people/{user}/sounds/{sound_id}",
                        f"[0, {rng.randrange(200_000, 1_300_000)}]",
                        user,
                        rng.choice(LICENSES),
                    )
                )


def aqa_questions(
    events: list[tuple[str, str, str, str]], rng: random.Random
) -> list[tuple[str, list[str]]]:
    """Six questions about a clip with three annotator answers each."""
    absent = [e for e in EVENTS if e not in events]
    noun, _, progressive, base = events[0]
    other = absent[rng.randrange(len(absent))]
    article = "" if noun in MASS_NOUNS else "a "
    questions = [
        (f"Is {article}{noun} {progressive}?", "yes"),
        (f"Is there {'' if other[0] in MASS_NOUNS else 'a '}{other[0]} {other[2]}?", "no"),
        (f"How many times does the {noun} {base}?", rng.choice(COUNTS)),
        (f"When does the {noun} {base}?", rng.choice(POSITIONS)),
        (
            f"Does the {noun} {base} at the {rng.choice(POSITIONS[:3])}?",
            rng.choice(("yes", "no")),
        ),
        ("What is making the loudest sound?", noun),
    ]
    if len(events) > 1:
        second = events[1]
        questions[4] = (f"Is there {'' if second[0] in MASS_NOUNS else 'a '}{second[0]}?", "yes")
    answered = []
    for question, answer in questions:
        draw = rng.random()
        if draw < 0.8:
            answers = [answer] * 3
        elif answer in ("yes", "no"):
            answers = [answer, answer, "no" if answer == "yes" else "yes"]
        elif draw < 0.95:
            answers = [answer, answer, rng.choice((*COUNTS, *POSITIONS))]
        else:  # three different answers: a tie the vote must drop
            answers = [answer, *rng.sample([w for w in (*COUNTS, *POSITIONS) if w != answer], 2)]
        rng.shuffle(answers)
        answered.append((question, answers))
    return answered


def write_clotho_aqa(folder: Path, sizes: CorpusSizes, seed: int) -> None:
    """Clotho-AQA files named as the Clotho files of the same size (shared sounds).

    The k-th regular clip of an AQA split is the k-th file of its Clotho split; every
    twentieth clip is instead a file of the next Clotho split, counted from that split's
    end, so no file lands in two AQA splits at the published proportions."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"clotho-aqa-{seed}")
    splits = list(CLOTHO_CLIPS)
    for split, clips in sizes.clotho_aqa_clips.items():
        regular = crossing = 0
        with open(
            folder / f"clotho_aqa_{split}.csv", "w", encoding="latin-1", newline=""
        ) as handle:
            writer = csv.writer(handle)
            writer.writerow(("file_name", "QuestionText", "answer", "confidence"))
            for index in range(clips):
                own = CLOTHO_OF_AQA_SPLIT[split]
                if index % 20 == 19:
                    other = splits[(splits.index(own) + 1) % len(splits)]
                    available = sizes.clotho_clips[other]
                    name = clotho_file_name(other, (available - 1 - crossing) % available)
                    crossing += 1
                else:
                    name = clotho_file_name(own, regular % sizes.clotho_clips[own])
                    regular += 1
                events = clip_events(rng)
                for question, answers in aqa_questions(events, rng):
                    for answer in answers:
                        confidence = "yes" if rng.random() < 0.85 else "maybe"
                        writer.writerow((name, question, answer, confidence))


def write_laion(folder: Path, sizes: CorpusSizes, seed: int) -> None:
    """bench/ingest.py's metadata-only shards, moved into `train/` and `test/` folders."""
    from ingest import build_shards

    staging = folder / "staging"
    build_shards(staging, sizes.laion_clips, seed)
    shards = sorted(staging.glob("*.tar"))
    test_from = (
        len(shards) - max(1, round(len(shards) * LAION_TEST_SHARE)) if len(shards) > 1 else 1
    )
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True, exist_ok=True)
    for index, shard in enumerate(shards):
        shard.rename(folder / ("test" if index >= test_from else "train") / shard.name)
    staging.rmdir()


WRITERS = {
    "audiocaps": write_audiocaps,
    "clotho": write_clotho,
    "clotho-aqa": write_clotho_aqa,
    "laion630k": write_laion,
}


def corpus_folder(corpora: Path, source: str, sizes: CorpusSizes) -> Path:
    """Folder of one corpus at one size, named by its clip count (shared across runs)."""
    return corpora / f"{source}-{sizes.clips(source)}"


def ensure_corpus(corpora: Path, source: str, sizes: CorpusSizes, seed: int = 0) -> Path:
    """The corpus folder, built when absent (a marker written last says it is complete)."""
    folder = corpus_folder(corpora, source, sizes)
    marker = folder / COMPLETE_MARKER
    if marker.is_file():
        return folder
    if folder.exists():  # an interrupted build
        shutil.rmtree(folder)
    WRITERS[source](folder, sizes, seed)
    marker.write_text(json.dumps({"source": source, "clips": sizes.clips(source), "seed": seed}))
    return folder
