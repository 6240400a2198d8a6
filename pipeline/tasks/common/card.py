"""Dataset card: the `README.md` every export writes beside its files.

Hugging Face dataset-card format: a YAML header (`license`, `task_categories`,
`size_categories`, `configs` with the split files where the format has them, and
`dataset_info.splits` with the number of examples per split), then Markdown sections.
Everything stated is read from the warehouse for exactly the exported rows: sources and
their licenses, generation and prompt versions, models, the CLAP checkpoint and policy,
the pitch method, the split policy and a leakage check, counts, reasons items were left
out, and known limits (offline rules, random CLAP, unscored items).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.audio.io import split_location
from pipeline.tasks.common.generate import get_task
from pipeline.tasks.common.streaming import StreamedRows, scan_rows

if TYPE_CHECKING:
    from pipeline.storage import Warehouse
    from pipeline.tasks.common.export import ExportRows

# Hugging Face task category ids (hub vocabulary) per dataset task.
TASK_CATEGORIES: dict[str, list[str]] = {
    "auditorybench-animal": ["fill-mask"],
    "auditorybench-pitch": ["fill-mask"],
    "reasonaqa": ["question-answering", "audio-text-to-text"],
    "nlar": ["question-answering", "audio-text-to-text"],
}
OFFLINE_MODEL = "offline-rules"
RANDOM_CLAP_PREFIX = "tiny-random"
UNKNOWN_LICENSE = "unknown"


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


# Python's `" ".join(text.lower().split())` in SQL: str.split() breaks on the ASCII
# whitespace, the separators 0x1c-0x1f and Unicode spaces, which RE2's \s alone misses.
WHITESPACE_CLASS = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]+"
NORMALIZED_TEXT_SQL = (
    f"trim(regexp_replace(lower(coalesce(input, '')), '{WHITESPACE_CLASS}', ' ', 'g'), ' ')"
)
MISSING_AUDIO_BATCH = 5_000


def card_facts(warehouse: Warehouse, task_id: str, rows: ExportRows) -> dict[str, Any]:
    """Everything the card states, as plain data (tests read this too).

    Computed by SQL aggregates over the export's selection (`rows.selection_sql`), so the
    card of a million items costs no more memory than the card of a hundred.
    """
    selected = f"WITH selected AS ({rows.selection_sql}) "
    used = selected + ", used AS (SELECT DISTINCT unnest(clip_ids) AS clip_id FROM selected) "

    def query(sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        return scan_rows(warehouse, sql, [task_id, *(params or [])])

    summary = query(
        selected + "SELECT count(*) AS items, "
        "list(DISTINCT generation_version) AS generation_versions, "
        "list(DISTINCT prompt_name || '@' || coalesce(prompt_version, 'None')) "
        "  FILTER (WHERE coalesce(prompt_name, '') <> '') AS prompts, "
        "list(DISTINCT model) FILTER (WHERE coalesce(model, '') <> '') AS models "
        "FROM selected"
    )[0]
    splits = {
        r["split"]: r["n"]
        for r in query(selected + "SELECT split, count(*) AS n FROM selected GROUP BY 1 ORDER BY 1")
    }
    licenses: dict[str, Counter[str]] = {}
    for clip in query(
        used + "SELECT source, coalesce(license, ?) AS license, count(*) AS n FROM clips "
        "WHERE clip_id IN (SELECT clip_id FROM used) GROUP BY ALL ORDER BY ALL",
        [UNKNOWN_LICENSE],
    ):
        licenses.setdefault(clip["source"], Counter())[clip["license"]] += clip["n"]
    # The selected rows carry their latest filter decision (view `items`): counted as they
    # are, each exported row once.
    filters = query(
        selected + "SELECT filter_policy AS policy, filter_status, count(*) AS n "
        "FROM selected GROUP BY ALL ORDER BY ALL"
    )
    checkpoints = query(
        selected + "SELECT DISTINCT f.backend, f.checkpoint, f.policy, f.policy_params "
        "FROM item_filters f WHERE f.item_id IN (SELECT item_id FROM selected) "
        "AND f.checkpoint IS NOT NULL ORDER BY ALL"
    )
    pitch = query(
        used + "SELECT method, params, count(*) AS clips FROM clip_pitch "
        "WHERE clip_id IN (SELECT clip_id FROM used) GROUP BY ALL ORDER BY clips DESC"
    )
    left_out = scan_rows(
        warehouse,
        "SELECT reason, count(*) AS n FROM ("
        "  SELECT unnest(validation_reasons) AS reason FROM items_current "
        "  WHERE task = ? AND validation_status <> 'valid'"
        "  UNION ALL SELECT 'clap_dropped' FROM items_current "
        "  WHERE task = ? AND validation_status = 'valid' AND filter_status = 'dropped'"
        "  UNION ALL SELECT 'review_rejected: ' || coalesce(r.reason, '') "
        "  FROM item_review_latest r JOIN items_current i USING (item_id) "
        "  WHERE i.task = ? AND r.decision = 'reject'"
        ") GROUP BY 1 ORDER BY n DESC, reason",
        [task_id, task_id, task_id],
    )
    missing_audio = 0
    for batch in StreamedRows(
        warehouse,
        used + "SELECT c.audio_root, c.audio_path FROM clips c "
        "WHERE c.clip_id IN (SELECT clip_id FROM used)",
        [task_id],
        chunk_rows=MISSING_AUDIO_BATCH,
    ).batches():
        missing_audio += sum(1 for clip in batch if not split_location(clip)[0].is_file())
    clip_count = query(used + "SELECT count(*) AS n FROM used")[0]["n"]
    several = query(
        selected + ", "
        "clip_splits AS (SELECT clip_id FROM (SELECT split, unnest(clip_ids) AS clip_id "
        "  FROM selected) GROUP BY clip_id HAVING count(DISTINCT split) > 1), "
        f"texts AS (SELECT {NORMALIZED_TEXT_SQL} AS text, split FROM selected), "
        "text_splits AS (SELECT text FROM texts WHERE text <> '' GROUP BY text "
        "  HAVING count(DISTINCT split) > 1) "
        "SELECT (SELECT count(*) FROM clip_splits) AS clips, "
        "(SELECT count(*) FROM text_splits) AS texts"
    )[0]
    return {
        "task": task_id,
        "items": summary["items"],
        "splits": splits,
        "licenses": {s: dict(c) for s, c in sorted(licenses.items())},
        "generation_versions": sorted(summary["generation_versions"] or []),
        "prompts": sorted(summary["prompts"] or []),
        "models": sorted(summary["models"] or []),
        "filter_counts": filters,
        "clap": checkpoints,
        "pitch_methods": pitch,
        "split_policy": get_task(task_id).split_policy.model_dump(mode="json"),
        "clips_in_several_splits": several["clips"],
        "texts_in_several_splits": several["texts"],
        "left_out": {r["reason"]: r["n"] for r in left_out},
        "clips": clip_count,
        "clips_without_audio": missing_audio,
    }


def known_limits(facts: dict[str, Any]) -> list[str]:
    limits = []
    if OFFLINE_MODEL in facts["models"]:
        limits.append(
            "Items were written by the offline rule backend (`offline-rules`), not an LLM: "
            "phrasing is templated and varies little."
        )
    if any(str(c["checkpoint"]).startswith(RANDOM_CLAP_PREFIX) for c in facts["clap"]):
        limits.append(
            "CLAP scores come from a randomly initialised model: the CLAP filter decisions "
            "carry no audio-text meaning."
        )
    unscored = sum(r["n"] for r in facts["filter_counts"] if r["filter_status"] == "unscored")
    if unscored:
        limits.append(
            f"{unscored} items were not CLAP-scored (no checkpoint configured, no usable "
            "audio, or no CLAP rule for the item kind)."
        )
    if facts["clips_without_audio"]:
        limits.append(
            f"{facts['clips_without_audio']} of {facts['clips']} clips had no audio file when "
            "exported (their audio columns are empty)."
        )
    if any(UNKNOWN_LICENSE in c for c in facts["licenses"].values()):
        limits.append("Some source clips carry no license in their metadata (`unknown`).")
    return limits


def dataset_card(facts: dict[str, Any], files: dict[str, list[str]] | None = None) -> str:
    """The card's text. `files`: split → file names, for the YAML `configs` section."""
    licenses = sorted({lic for c in facts["licenses"].values() for lic in c})
    header: dict[str, Any] = {
        "pretty_name": f"auditory-forge {facts['task']}",
        "license": "other" if len(licenses) != 1 else _license_id(licenses[0]),
        "task_categories": TASK_CATEGORIES.get(facts["task"], ["other"]),
        "size_categories": [size_category(facts["items"])],
        "tags": ["audio", "synthetic", "auditory-forge"],
        "dataset_info": {
            "splits": [{"name": s, "num_examples": n} for s, n in facts["splits"].items()]
        },
    }
    if len(licenses) != 1:
        header["license_name"] = "mixed"
        header["license_details"] = "; ".join(licenses) or "no source clips"
    if files:
        header["configs"] = [
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": p} for s, p in sorted(files.items())],
            }
        ]
    lines = ["---", yaml.safe_dump(header, sort_keys=False).strip(), "---", ""]
    lines += [f"# auditory-forge: {facts['task']}", ""]
    lines += [
        f"{facts['items']} items generated by auditory-forge. Splits: "
        + ", ".join(f"{s} {n}" for s, n in facts["splits"].items())
        + ".",
        "",
        "## Sources and licenses",
        "",
    ]
    lines += _bullets(
        f"{source}: " + ", ".join(f"{lic} ({n} clips)" for lic, n in sorted(counts.items()))
        for source, counts in facts["licenses"].items()
    )
    lines += ["", "## Generation", ""]
    lines += [f"- generation versions: {', '.join(facts['generation_versions']) or 'none'}"]
    lines += [f"- prompts (name@version): {', '.join(facts['prompts']) or 'templates only'}"]
    lines += [f"- models: {', '.join(facts['models']) or 'none'}"]
    lines += ["", "## CLAP filter", ""]
    lines += _bullets(
        f"{c['backend']} `{c['checkpoint']}`, policy {c['policy']} `{c['policy_params']}`"
        for c in facts["clap"]
    ) or ["- no CLAP checkpoint was used"]
    lines += _bullets(
        f"{r['filter_status']} ({r['policy'] or 'no policy'}): {r['n']}"
        for r in facts["filter_counts"]
    )
    lines += ["", "## Pitch measurement", ""]
    lines += _bullets(
        f"{p['method']} `{p['params']}` ({p['clips']} clips)" for p in facts["pitch_methods"]
    ) or ["- no measured pitch behind these items"]
    lines += ["", "## Splits and leakage", ""]
    lines += [
        f"- policy: by source clip (an item lives in its clips' split); "
        f"`{json.dumps(facts['split_policy'])}`",
        f"- clips used in more than one split: {facts['clips_in_several_splits']}",
        f"- identical texts (case and spacing ignored) in more than one split: "
        f"{facts['texts_in_several_splits']}",
        "",
        "## Left out of this export",
        "",
    ]
    lines += _bullets(f"{reason}: {n}" for reason, n in facts["left_out"].items()) or ["- nothing"]
    lines += ["", "## Known limits", ""]
    lines += _bullets(known_limits(facts)) or ["- none recorded"]
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import datasets",
        "ds = datasets.load_from_disk('<this folder>')  # the `hf` export",
        "ds.push_to_hub('<user>/<name>')  # publish it (needs `huggingface-cli login`)",
        "```",
        "",
    ]
    return "\n".join(lines)


def _bullets(lines: Any) -> list[str]:
    return [f"- {line}" for line in lines]


def _license_id(license_text: str) -> str:
    """Hub license ids for the licenses the sources use; anything else is 'other'."""
    text = license_text.lower()
    for needle, hub_id in (
        ("publicdomain/zero", "cc0-1.0"),
        ("creative commons 0", "cc0-1.0"),
        ("cc0", "cc0-1.0"),
        ("by-nc/4.0", "cc-by-nc-4.0"),
        ("by-nc/3.0", "cc-by-nc-3.0"),
        ("by/4.0", "cc-by-4.0"),
        ("by/3.0", "cc-by-3.0"),
    ):
        if needle in text:
            return hub_id
    return "other"
