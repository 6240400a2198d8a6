"""The viewer's pages, audio streaming and reviews, over HTTP (FastAPI's TestClient)."""

from __future__ import annotations

import io

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from pipeline.storage import Warehouse
from pipeline.tasks import export_task
from pipeline.viewer.app import create_app
from pipeline.viewer.reviews import review_summary


@pytest.fixture(scope="module")
def client(viewer_warehouse: Warehouse) -> TestClient:
    return TestClient(create_app(viewer_warehouse, reviewer="tester"))


def pitch_item(wh: Warehouse, offset: int = 0) -> dict:
    return wh.rows(
        "SELECT * FROM items_current WHERE task = 'auditorybench-pitch' AND subtask = 'clip' "
        "AND validation_status = 'valid' ORDER BY item_id LIMIT 1 OFFSET ?",
        [offset],
    )[0]


def test_overview_lists_every_task_with_counts(client: TestClient, viewer_warehouse) -> None:
    page = client.get("/")
    assert page.status_code == 200
    n = viewer_warehouse.rows(
        "SELECT count(*) AS n FROM items_current WHERE task = 'auditorybench-pitch' AND split = 'test'"
    )[0]["n"]
    assert "auditorybench-animal" in page.text and "auditorybench-pitch" in page.text
    assert f'<td class="num">{n}</td>' in page.text


def test_list_filters_by_task_split_status_and_sorts_by_gap(client, viewer_warehouse) -> None:
    page = client.get("/items?task=auditorybench-pitch&split=train&status=valid&sort=gap")
    assert page.status_code == 200
    n = viewer_warehouse.rows(
        "SELECT count(*) AS n FROM items_current WHERE task = 'auditorybench-pitch' "
        "AND split = 'train' AND validation_status = 'valid'"
    )[0]["n"]
    assert f"{n} items" in page.text
    ids = [
        line.split('data-item-id="')[1][:24]
        for line in page.text.splitlines()
        if "data-item-id" in line
    ]
    gaps = {
        r["item_id"]: r["gap"]
        for r in viewer_warehouse.rows(
            "SELECT item_id, TRY_CAST(json_extract(facts, '$.difference_percentage') AS DOUBLE) AS gap "
            "FROM items_current WHERE task = 'auditorybench-pitch'"
        )
    }
    shown = [gaps[i] for i in ids]
    assert shown == sorted(shown, reverse=True) and len(shown) == min(n, 50)
    rejected = client.get("/items?task=auditorybench-pitch&status=rejected")
    assert "label_balance" in rejected.text or "pitch_gap_too_small" in rejected.text
    assert client.get("/items?q=no-such-text-anywhere").text.count("data-item-id") == 0


def test_item_page_shows_text_audio_pitch_and_lineage(client, viewer_warehouse) -> None:
    item = pitch_item(viewer_warehouse)
    page = client.get(f"/items/{item['item_id']}")
    assert page.status_code == 200
    for clip_id in item["clip_ids"]:
        assert f'src="/audio/{clip_id.replace(":", "%3A")}"' in page.text
    assert item["answer"] in page.text and item["prompt_version"] in page.text
    assert " Hz · voiced " in page.text and "offline-rules" in page.text
    assert "Raw LLM output" in page.text


def test_audio_streams_whole_files_and_byte_ranges(client, viewer_warehouse) -> None:
    clip_id = pitch_item(viewer_warehouse)["clip_ids"][0]
    whole = client.get(f"/audio/{clip_id}")
    assert whole.status_code == 200 and whole.headers["content-type"] == "audio/flac"
    samples, rate = sf.read(io.BytesIO(whole.content))
    assert rate > 0 and len(samples) > 0
    part = client.get(f"/audio/{clip_id}", headers={"Range": "bytes=10-99"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 10-99/{len(whole.content)}"
    assert part.content == whole.content[10:100]
    tail = client.get(f"/audio/{clip_id}", headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.content == whole.content[-5:]
    beyond = client.get(f"/audio/{clip_id}", headers={"Range": f"bytes={len(whole.content)}-"})
    assert beyond.status_code == 416


def test_tar_member_is_served_from_inside_the_shard(client, tar_member_bytes, made_clips) -> None:
    response = client.get(f"/audio/{made_clips['tar']}")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    assert response.content == tar_member_bytes
    part = client.get(f"/audio/{made_clips['tar']}", headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"RIFF"


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "unknown"])
def test_paths_outside_the_audio_root_and_unknown_ids_are_404(client, made_clips, kind) -> None:
    clip_id = made_clips.get(kind, "no:such-clip")
    response = client.get(f"/audio/{clip_id}")
    assert response.status_code == 404
    assert "RIFF" not in response.text and "<h1>Not found</h1>" in response.text
    if kind != "unknown":  # the file exists: refused because it lies outside the root
        assert "leaves the audio root" in response.text


def test_unknown_pages_are_404_pages(client) -> None:
    for url in ("/items/000000000000000000000000", "/nowhere", "/reports/x/../../secret.png"):
        response = client.get(url)
        assert response.status_code == 404 and "Not found" in response.text


def test_reject_needs_a_reason_then_is_recorded_and_export_lacks_it(
    client, viewer_warehouse, tmp_path
) -> None:
    item = pitch_item(viewer_warehouse, offset=1)
    url = f"/items/{item['item_id']}/review"
    refused = client.post(url, data={"decision": "reject", "reviewer": "tester", "reason": " "})
    assert refused.status_code == 200 and "a rejection needs a reason" in refused.text
    before = {r["item_id"] for r in viewer_warehouse.rows("SELECT item_id FROM item_reviews")}
    assert item["item_id"] not in before
    done = client.post(
        url,
        data={"decision": "reject", "reviewer": "tester", "reason": "wrong source"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    row = viewer_warehouse.rows("SELECT * FROM item_reviews WHERE item_id = ?", [item["item_id"]])
    assert [(r["decision"], r["reason"], r["reviewer"]) for r in row] == [
        ("reject", "wrong source", "tester")
    ]
    export_task(viewer_warehouse, "auditorybench-pitch", "jsonl", tmp_path)
    keys = {
        line.split('"key": "')[1][:24]
        for p in tmp_path.glob("*.jsonl")
        for line in p.read_text().splitlines()
    }
    assert item["item_id"] not in keys and pitch_item(viewer_warehouse)["item_id"] in keys
    card = (tmp_path / "README.md").read_text()
    assert "review_rejected: wrong source: 1" in card
    summary = review_summary(viewer_warehouse, "auditorybench-pitch")
    assert summary.rejected >= 1 and summary.agree < summary.reviewed
    accept = client.post(
        url, data={"decision": "accept", "reviewer": "tester"}, follow_redirects=False
    )
    assert accept.status_code == 303
    export_task(viewer_warehouse, "auditorybench-pitch", "jsonl", tmp_path)
    assert item["item_id"] in (tmp_path / f"{item['split']}.jsonl").read_text()
