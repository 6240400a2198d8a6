"""What the published ReasonAQA release and Mellow's training code key on.

Facts read from `soham97/mellow` (README of `main`; `data/audiotext_dataset.py`,
`data/audiotext_eval_dataset.py` and `metrics/aqa.py` of branch `training`) and the
release's composition table (`resource/data.png`):

* Files: the release ships `train.json`, `val.json` and `test.json` (our split `dev`
  is the release's `val`).
* `subtype` holds the name of the release's source file, e.g. `ACD-1.json`, `CLE.json`,
  `AudioCaps.json` (the README: "the type matches the first column" of the composition
  table). Rows of that table: `Clotho`, `AudioCaps` (captioning), `ClothoAQA` (binary),
  `CLE` / `ACE` (Clotho / AudioCaps entailment), `CLD` / `ACD` (Clotho / AudioCaps
  difference), `Clotho-MCQ`, `Clotho-Detail`, `AudioCaps-MCQ`, `AudioCaps-Detail`.
  The README's only difference example is `ACD-1.json` with the few-words instruction,
  so tiers are numbered 1 = few words, 2 = a sentence, 3 = detail. The MCQ / Detail file
  names are the table rows with `.json` added (the README lists no further names).
* Difference: both loaders replace exactly three inputs, "explain the difference in few
  words", "explain the difference in a sentence", "explain the difference in detail";
  any other input falls through to the generic branch.
* Captioning: the eval loader turns the input "caption first audio" into "caption the
  audio" with `caption1` as the answer; its captioning metric groups the predictions of
  five consecutive items (one per reference caption of a clip). The table counts one
  item per caption (Clotho train 19,195 = 3,839 clips x 5).
* Entailment: ACE (AudioCaps) exists in test only; CLE (Clotho) in every split.
  The metric (`evaluate_entail_metric`) takes the text before the first ")" of answer
  and prediction as the option letter (anything else counts as "a") and names the
  classes a = Entailment, b = Neutral, c = Contradiction; its per-class step needs all
  three classes among the answers. The README's example question lists the options
  "a) It is definitely true b) It is definitely false c) It is plausible d) I cannot
  determine"; we keep its wording but order the options as the metric names them, so
  its per-class accuracies are reported under the right names.
* MCQ (`evaluate_metric`): correct iff the prediction's text before ")" equals the
  answer's; answers look like `b) chirping birds`. Binary (`evaluate_metric_binary`):
  correct iff the answer occurs in the prediction (case-folded).
* `filepath2` and `caption2` are empty except for the two-clip (difference) items.
"""

from __future__ import annotations

RELEASE_FILE = {"train": "train.json", "dev": "val.json", "test": "test.json"}

DIFFERENCE_TIERS = ("short", "sentence", "detailed")
DIFFERENCE_INSTRUCTION = {
    "short": "explain the difference in few words",
    "sentence": "explain the difference in a sentence",
    "detailed": "explain the difference in detail",
}
DIFFERENCE_TIER_NUMBER = {"short": 1, "sentence": 2, "detailed": 3}

CAPTION_INSTRUCTION = "caption first audio"

ENTAILMENT_LABELS = ("entailment", "neutral", "contradiction")
ENTAILMENT_OPTIONS = (
    "a) It is definitely true",
    "b) It is plausible",
    "c) It is definitely false",
    "d) I cannot determine",
)
ENTAILMENT_ANSWER = dict(zip(ENTAILMENT_LABELS, ENTAILMENT_OPTIONS, strict=False))
ENTAILMENT_QUESTION = 'Based on the audio, what can be said about the hypothesis - "{hypothesis}"?'
# The release has AudioCaps entailment (ACE) in test only.
AUDIOCAPS_ENTAILMENT_SPLITS = ("test",)

_CORPUS_PREFIX = {"audiocaps": "AudioCaps", "clotho": "Clotho", "clotho-aqa": "Clotho"}
_PAIR_PREFIX = {"audiocaps": "AC", "clotho": "CL", "clotho-aqa": "CL"}


def entailment_input(hypothesis: str) -> str:
    return f"{ENTAILMENT_QUESTION.format(hypothesis=hypothesis)} {' '.join(ENTAILMENT_OPTIONS)}"


def release_subtype(family: str, source: str) -> str:
    """The release's `subtype` for one of our families (`items.subtask`) and clip source."""
    if family == "binary":
        return "ClothoAQA.json"
    if family == "caption":
        return f"{_CORPUS_PREFIX[source]}.json"
    if family == "mcq":
        return f"{_CORPUS_PREFIX[source]}-MCQ.json"
    if family == "detail":
        return f"{_CORPUS_PREFIX[source]}-Detail.json"
    if family == "entailment":
        return f"{_PAIR_PREFIX[source]}E.json"
    if family.startswith("difference-"):
        tier = family.removeprefix("difference-")
        return f"{_PAIR_PREFIX[source]}D-{DIFFERENCE_TIER_NUMBER[tier]}.json"
    raise ValueError(f"no ReasonAQA release subtype for family {family!r}")
