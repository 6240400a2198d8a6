"""A real OpenAI-compatible HTTP server with scripted replies — test and bench infrastructure.

Not a production server and never used by the pipeline itself. Tests (ours and the task
engineers') and `bench/llm.py` start it on 127.0.0.1 on a random port, point the engine
at `server.base_url`, and decide per request what comes back::

    def script(request: dict, count: int) -> Reply | dict | str:
        if count == 1:
            return Reply(status=429, headers={"Retry-After": "0"})
        return {"decline": False, "sentence": "..."}     # becomes the message content

    with ScriptedServer(script) as server:
        ... LLMConfig(backend="openai", base_url=server.base_url, model="m") ...
        assert server.request_count == 2

It speaks `POST /v1/chat/completions` and `GET /v1/models` over HTTP/1.1 keep-alive
(threaded stdlib `http.server`). `python -m pipeline.llm.scripted_server --latency 0.05`
runs it standalone in fixed-latency mode (the benchmark runs it in its own process).

Load model (for the adaptive-concurrency benchmark): with `knee` set, a reply takes
`latency_s * max(1, in_flight / knee)` — a server that shares its compute among the
requests in flight, as a self-hosted GPU server does; with `capacity` set, a request that
arrives while more than `capacity` are in flight gets a 429 at once (with
`retry-after-ms: 20`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MODEL = "scripted-model"


@dataclass
class Reply:
    """What the server sends for one request.

    `content` (str, or a dict/list that is JSON-encoded) becomes the assistant message;
    `status` != 200 sends an OpenAI-style error with `error_message`; `body` sends raw
    bytes instead (e.g. a malformed HTTP response body); `delay_s` waits before replying;
    `trickle_s` > 0 sends the body one byte at a time with that pause between bytes (a
    server that keeps a connection alive without ever finishing the reply).
    """

    content: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    error_message: str = "scripted error"
    body: bytes | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int = 11
    completion_tokens: int = 7
    trickle_s: float = 0.0


Script = Callable[[dict[str, Any], int], "Reply | dict[str, Any] | list[Any] | str"]


def reject_json_schema(request: dict[str, Any]) -> Reply | None:
    """The 400 a server without structured-output support gives for `json_schema`."""
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return Reply(
            status=400,
            error_message="response_format type 'json_schema' is not supported by this server",
        )
    return None


def echo_script(request: dict[str, Any], count: int) -> dict[str, Any]:
    """Default script: a small valid JSON object naming the request number."""
    return {"reply": f"request {count}"}


def schema_instance(schema: dict[str, Any]) -> Any:
    """A minimal value satisfying a template's JSON schema (objects, arrays, enums, ...):
    with `schema_reply`, a script whose every reply is schema-valid."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_instance(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {name: schema_instance(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [schema_instance(schema.get("items", {"type": "string"})) for _ in range(count)]
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "null":
        return None
    return "a steady low hum"


def schema_reply(request: dict[str, Any], count: int) -> Any:
    response_format = request.get("response_format") or {}
    schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    return schema_instance(schema)


class ScriptedServer:
    """Background-thread HTTP server; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        latency_s: float = 0.0,
        models: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        knee: int | None = None,
        capacity: int | None = None,
    ) -> None:
        self.script = script or echo_script
        self.latency_s = latency_s
        self.knee = knee
        self.capacity = capacity
        self.in_flight = 0
        self.overloaded = 0  # 429s sent by the load model
        self.models = models or [DEFAULT_MODEL]
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []  # lower-cased names
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def request_count(self) -> int:
        """Chat-completion requests received so far."""
        with self._lock:
            return len(self.requests)

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, request: dict[str, Any], headers: dict[str, str]) -> tuple[int, Reply]:
        with self._lock:
            count = next(self._counter)
            self.requests.append(request)
            self.headers_seen.append(headers)
        outcome = self.script(request, count)
        if not isinstance(outcome, Reply):
            outcome = Reply(content=outcome)
        return count, outcome


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    owner: ScriptedServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK
    # add ~40 ms to every reply.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "scripted"}
                for m in self.server.owner.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, _error_body(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, _error_body(f"no route POST {self.path}", "not_found"))
            return
        try:
            request = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, _error_body("request body is not JSON", "invalid_request"))
            return
        owner = self.server.owner
        with owner._lock:
            owner.in_flight += 1
            in_flight = owner.in_flight
        try:
            if owner.capacity is not None and in_flight > owner.capacity:
                with owner._lock:
                    owner.overloaded += 1
                self._send_json(
                    429, _error_body("over capacity", "rate_limit"), {"retry-after-ms": "20"}
                )
                return
            self._answer(owner, request, in_flight)
        finally:
            with owner._lock:
                owner.in_flight -= 1

    def _answer(self, owner: ScriptedServer, request: dict[str, Any], in_flight: int) -> None:
        count, reply = owner._next(request, {k.lower(): v for k, v in self.headers.items()})
        latency = owner.latency_s
        if owner.knee is not None:
            latency *= max(1.0, in_flight / owner.knee)
        delay = reply.delay_s + latency
        if delay > 0:
            time.sleep(delay)
        trickle = reply.trickle_s
        if reply.body is not None:
            self._send_bytes(reply.status, reply.body, reply.headers, trickle)
        elif reply.status != 200:
            self._send_json(
                reply.status, _error_body(reply.error_message, "scripted"), reply.headers, trickle
            )
        else:
            self._send_json(200, _completion(request, count, reply), reply.headers, trickle)

    def _send_json(
        self,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
        trickle_s: float = 0.0,
    ) -> None:
        self._send_bytes(
            status,
            json.dumps(payload).encode(),
            {"Content-Type": "application/json"} | (headers or {}),
            trickle_s,
        )

    def _send_bytes(
        self, status: int, body: bytes, headers: dict[str, str], trickle_s: float = 0.0
    ) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if trickle_s <= 0:
                self.wfile.write(body)
                return
            for index in range(len(body)):
                self.wfile.write(body[index : index + 1])
                self.wfile.flush()
                time.sleep(trickle_s)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout fired while we slept): nothing to do.
            self.close_connection = True


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _completion(request: dict[str, Any], count: int, reply: Reply) -> dict[str, Any]:
    content = reply.content
    if content is not None and not isinstance(content, str):
        content = json.dumps(content)
    return {
        "id": f"chatcmpl-scripted-{count}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", DEFAULT_MODEL),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": reply.refusal},
                "finish_reason": reply.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Run standalone in fixed-latency mode; prints `PORT <n>` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per reply")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--knee", type=int, default=None, help="load model: see module doc")
    parser.add_argument("--capacity", type=int, default=None, help="429 above this in flight")
    parser.add_argument(
        "--reply-json", default=None, help="fixed JSON reply content (default: echo script)"
    )
    args = parser.parse_args(argv)
    fixed = json.loads(args.reply_json) if args.reply_json else None
    script: Script = (lambda _r, _c: fixed) if fixed is not None else echo_script  # type: ignore[assignment,return-value]
    server = ScriptedServer(
        script, latency_s=args.latency, port=args.port, knee=args.knee, capacity=args.capacity
    )
    print(f"PORT {server.port}", flush=True)
    try:
        server._httpd.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
