"""A real local HTTP server speaking the OpenAI Batch API — test infrastructure, beside
`scripted_server` (whose `Reply`/script decides each request's answer).

Routes (the subset the OpenAI client and `pipeline.llm.batch_jobs` use):
`POST /v1/files` (multipart, purpose=batch), `GET /v1/files/{id}/content`,
`POST /v1/batches`, `GET /v1/batches/{id}`, `GET /v1/batches`, `POST /v1/batches/{id}/cancel`.

Batch states follow the API: validating → in_progress → completed | failed | expired,
and cancelling → cancelled. Each `GET /v1/batches/{id}` moves a batch one step, once
`release` is set (tests clear it to hold batches in_progress). `outcome(n)` decides the
end of the n-th batch created: "completed"; "expired" (only the first half of its
requests run: their results are in the output file, the rest are in the error file with
code `batch_expired`, as the API documents); "failed" (input rejected at validation,
nothing runs). A cancelled batch keeps the results of the requests run before the cancel
(the first half). Input over `max_file_bytes` is refused at upload (HTTP 400); a file over
`max_requests` lines fails validation.

`paid` counts requests the server ran (what a hosted API bills); `paid_ids` lists their
custom_ids, so a test can check that no request was paid twice.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from typing import Any

from pipeline.llm.scripted_server import Reply, Script, _completion, _error_body, _Server

Outcome = Callable[[int], str]


class BatchServer:
    """Background-thread Batch-API server; a context manager like `ScriptedServer`."""

    def __init__(
        self,
        script: Script,
        *,
        outcome: Outcome | None = None,
        max_requests: int = 50_000,
        max_file_bytes: int = 200 * 1024 * 1024,
    ) -> None:
        self.script = script
        self.outcome = outcome or (lambda n: "completed")
        self.max_requests = max_requests
        self.max_file_bytes = max_file_bytes
        self.release = threading.Event()
        self.release.set()
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.paid_ids: list[str] = []
        self._ids = itertools.count(1)
        self._httpd = _Server(("127.0.0.1", 0), _BatchHandler)
        self._httpd.owner = self  # type: ignore[assignment]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def paid(self) -> int:
        with self.lock:
            return len(self.paid_ids)

    def __enter__(self) -> BatchServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ---- state machine -----------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            index = len(self.batches) + 1
            batch_id = self.new_id("batch")
            batch = {
                "id": batch_id,
                "object": "batch",
                "endpoint": body.get("endpoint", "/v1/chat/completions"),
                "input_file_id": body["input_file_id"],
                "completion_window": body.get("completion_window", "24h"),
                "status": "validating",
                "created_at": int(time.time()),
                "metadata": body.get("metadata"),
                "output_file_id": None,
                "error_file_id": None,
                "errors": None,
                "request_counts": {"total": 0, "completed": 0, "failed": 0},
                "_outcome": self.outcome(index),
            }
            self.batches[batch_id] = batch
            return _public(batch)

    def advance(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            batch = self.batches[batch_id]
            status = batch["status"]
            if status == "cancelling":
                self._finish(batch, "cancelled")
            elif self.release.is_set() and status == "validating":
                lines = self.files[batch["input_file_id"]].decode().splitlines()
                if batch["_outcome"] == "failed" or len(lines) > self.max_requests:
                    batch["status"] = "failed"
                    batch["errors"] = {
                        "object": "list",
                        "data": [{"code": "invalid_file", "message": "batch input rejected"}],
                    }
                else:
                    batch["status"] = "in_progress"
                    batch["request_counts"]["total"] = len(lines)
            elif self.release.is_set() and status == "in_progress":
                self._finish(batch, "completed" if batch["_outcome"] == "completed" else "expired")
            return _public(batch)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            batch = self.batches[batch_id]
            if batch["status"] in ("validating", "in_progress"):
                batch["status"] = "cancelling"
            return _public(batch)

    def _finish(self, batch: dict[str, Any], final: str) -> None:
        """Run the requests that get to run (all, or the first half), write the files."""
        lines = [json.loads(t) for t in self.files[batch["input_file_id"]].decode().splitlines()]
        ran = lines if final == "completed" else lines[: len(lines) // 2]
        output, errors = [], []
        for line in ran:
            self.paid_ids.append(line["custom_id"])
            reply = self.script(line["body"], len(self.paid_ids))
            if not isinstance(reply, Reply):
                reply = Reply(content=reply)
            if reply.status == 200:
                body = _completion(line["body"], len(self.paid_ids), reply)
                output.append(_result_line(line, 200, body))
            else:
                errors.append(
                    _result_line(line, reply.status, _error_body(reply.error_message, "x"))
                )
        code = "batch_expired" if final == "expired" else "batch_cancelled"
        for line in lines[len(ran) :]:
            errors.append(
                {
                    "id": self.new_id("batch_req"),
                    "custom_id": line["custom_id"],
                    "response": None,
                    "error": {"code": code, "message": "not executed before the batch ended"},
                }
            )
        for kind, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = self.new_id("file")
                self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[kind] = file_id
        batch["status"] = final
        batch["request_counts"] = {
            "total": len(lines),
            "completed": len(output),
            "failed": len(errors),
        }


def _result_line(line: dict[str, Any], status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"batch_req_{line['custom_id']}",
        "custom_id": line["custom_id"],
        "response": {"status_code": status, "request_id": "req", "body": body},
        "error": None,
    }


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


class _BatchHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    @property
    def owner(self) -> BatchServer:
        return self.server.owner  # type: ignore[return-value]

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        owner = self.owner
        if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
            data = owner.files.get(parts[2])
            if data is None:
                self._json(404, _error_body(f"no file {parts[2]}", "not_found"))
            else:
                self._bytes(200, data, "application/octet-stream")
        elif parts == ["v1", "batches"]:
            with owner.lock:
                data = [_public(b) for b in owner.batches.values()]
            self._json(200, {"object": "list", "data": data, "has_more": False})
        elif parts[:2] == ["v1", "batches"] and len(parts) == 3 and parts[2] in owner.batches:
            self._json(200, owner.advance(parts[2]))
        else:
            self._json(404, _error_body(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        parts = self.path.strip("/").split("/")
        owner = self.owner
        if parts == ["v1", "files"]:
            self._upload(raw)
        elif parts == ["v1", "batches"]:
            body = json.loads(raw or b"{}")
            if body.get("input_file_id") not in owner.files:
                self._json(400, _error_body("unknown input_file_id", "invalid_request"))
                return
            self._json(200, owner.create_batch(body))
        elif parts[:2] == ["v1", "batches"] and parts[-1] == "cancel" and parts[2] in owner.batches:
            self._json(200, owner.cancel(parts[2]))
        else:
            self._json(404, _error_body(f"no route POST {self.path}", "not_found"))

    def _upload(self, raw: bytes) -> None:
        owner = self.owner
        header = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(header + raw)
        fields = {
            part.get_param("name", header="content-disposition"): part
            for part in message.iter_parts()
        }
        file_part = fields.get("file")
        if file_part is None:
            self._json(400, _error_body("no file part", "invalid_request"))
            return
        data = file_part.get_payload(decode=True) or b""
        if len(data) > owner.max_file_bytes:
            self._json(400, _error_body("file too large for a batch", "invalid_request"))
            return
        with owner.lock:
            file_id = owner.new_id("file")
            owner.files[file_id] = data
        self._json(
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": file_part.get_filename() or "batch.jsonl",
                "purpose": "batch",
                "status": "processed",
            },
        )

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._bytes(status, json.dumps(payload).encode(), "application/json")

    def _bytes(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
