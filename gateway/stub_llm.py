"""A deterministic, offline, OpenAI-compatible model server: the built-in stub model.

``factory run`` uses it when no real provider key is set, and the gateway tests use it so every
turn is reproducible and every model call can be counted::

    python -m gateway.stub_llm --port 0 --log /tmp/stub.jsonl
    # prints: STUB_LLM_READY port=43817

It answers ``POST /v1/chat/completions`` (JSON or SSE) with ``STUB-REPLY: <user text>``, where the
user text is what a person typed, recovered from what OpenClaw actually sends (see ``user_text``).
Markers in the text change the answer, so tests can provoke and observe behaviour:

``SLOW:<ms>``               delay the answer (callers provoke their timeouts)
``FAIL:<4xx|5xx>``          the model call itself fails with that status
``CONTEXT?``                report what the model was shown besides this message:
                            ``STUB-CONTEXT: earlier_user_turns=<n> markers=<MARK-…,…>``, counting the
                            real user turns before this one and every ``MARK-<word>`` in the system
                            prompt (workspace files, skills), earlier turns and tool results; the
                            turns of a history preamble (``gateway.history``) count as earlier turns
``TOOL:<name> <json>``      call the tool ``<name>`` with those arguments, if the request offers it
                            (else ``STUB-NO-TOOL: …`` naming what was offered); once the tool's
                            result comes back, answer ``STUB-TOOL-RESULT: <result>``

Each model call is appended to the log as one JSON line (with the context it saw); nothing secret
is logged (no headers).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import anyio
import anyio.to_thread

from gateway.history import split_history
from gateway.process import ManagedProcess

READY_PREFIX = "STUB_LLM_READY"
MODEL_ID = "stub-model"
REPLY_PREFIX = "STUB-REPLY: "
MAX_DELAY_MS = 600_000
# Leaves room in the log for history assertions without copying OpenClaw's ~40 KB system prompt.
_LOGGED_TEXT_CHARS = 2_000

_INTERNAL_CONTEXT = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT"
# A turn the gateway resumes after a restart quotes the interrupted message between these two.
_RESUMED_PREFIX = re.compile(r"^\[Queued user message from a previous active turn[^\]]*\]\n")
_RESUMED_NOTICE = "\n\n[System] Your previous turn was interrupted by a gateway restart"
# OpenClaw prefixes the user's turn with its arrival time, e.g. "[Fri 2026-11-20 23:56 UTC] ".
_TIMESTAMP_PREFIX = re.compile(r"^\[[A-Z][a-z]{2} \d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?(?: [A-Za-z0-9+:-]+)?\] ")
_SLOW = re.compile(r"SLOW:(\d+)")
_FAIL = re.compile(r"FAIL:([45]\d\d)")
_MARKER = re.compile(r"MARK-[A-Za-z0-9_-]+")
_TOOL = re.compile(r"TOOL:([A-Za-z0-9_.-]+)\s+(\{.*\})", re.DOTALL)
CONTEXT_PROBE = "CONTEXT?"
CONTEXT_PREFIX = "STUB-CONTEXT: "
TOOL_RESULT_PREFIX = "STUB-TOOL-RESULT: "
NO_TOOL_PREFIX = "STUB-NO-TOOL: "


def content_text(content: object) -> str:
    """Flatten an OpenAI message ``content`` (a string or a list of typed parts) to text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in {"text", "input_text"}
        ]
        return "\n".join(parts)
    return ""


def user_text(messages: Sequence[object]) -> str:
    """The text of the newest real user turn.

    OpenClaw appends an internal-context user message after the real one (skipped here), wraps the
    real one in a timestamp prefix, and on a session's first turn adds a ``Runtime:`` paragraph.
    A turn it resumes after a restart quotes the interrupted message before a ``[System]`` notice:
    the stub answers the quoted message, as a model would.
    """
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        text = content_text(message.get("content"))
        if text.lstrip().startswith(_INTERNAL_CONTEXT):
            continue
        text = text.split("\n\nRuntime:", 1)[0]
        text = _TIMESTAMP_PREFIX.sub("", text.strip(), count=1)
        if _RESUMED_PREFIX.match(text) and _RESUMED_NOTICE in text:
            text = _RESUMED_PREFIX.sub("", text, count=1).split(_RESUMED_NOTICE, 1)[0].strip()
        return text
    return ""


@dataclass(frozen=True)
class ContextSeen:
    """What the model was shown besides the current message (the ``CONTEXT?`` report)."""

    earlier_user_turns: int
    markers: tuple[str, ...]

    def report(self) -> str:
        return f"{CONTEXT_PREFIX}earlier_user_turns={self.earlier_user_turns} markers={','.join(self.markers) or '-'}"


def context_seen(messages: Sequence[object], seeded: Sequence[tuple[str, str]] = ()) -> ContextSeen:
    """Count the real user turns before the newest one, and collect the markers around it.

    ``seeded`` are the turns of a history preamble in the newest message (``gateway.history``):
    shown to the model besides the message itself, so they count as earlier turns too."""
    real_user = [
        i
        for i, m in enumerate(messages)
        if isinstance(m, dict)
        and m.get("role") == "user"
        and not content_text(m.get("content")).lstrip().startswith(_INTERNAL_CONTEXT)
    ]
    current = real_user[-1] if real_user else None
    markers: set[str] = set()
    for i, message in enumerate(messages):
        if i != current and isinstance(message, dict):
            markers.update(_MARKER.findall(content_text(message.get("content"))))
    for _, text in seeded:
        markers.update(_MARKER.findall(text))
    earlier = max(0, len(real_user) - 1) + sum(1 for role, _ in seeded if role == "user")
    return ContextSeen(earlier_user_turns=earlier, markers=tuple(sorted(markers)))


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # a JSON object, as OpenAI's wire carries it


@dataclass(frozen=True)
class StubAnswer:
    text: str
    delay_s: float
    # A FAIL:<status> marker makes the model call itself fail, for error-path tests.
    fail_status: int | None = None
    tool_call: ToolCall | None = None


def answer_for(text: str, context: ContextSeen | None = None, tools: Sequence[str] | None = None) -> StubAnswer:
    slow = _SLOW.search(text)
    delay_s = min(int(slow.group(1)), MAX_DELAY_MS) / 1000 if slow else 0.0
    fail = _FAIL.search(text)
    if fail:
        return StubAnswer(f"stub failure {fail.group(1)}", delay_s, int(fail.group(1)))
    # OpenClaw's heartbeat prompt asks for NO_REPLY when nothing needs attention: the stub never
    # has anything to report, so scheduled heartbeats stay silent instead of alerting.
    if "heartbeat" in text.lower() and "NO_REPLY" in text:
        return StubAnswer("NO_REPLY", delay_s)
    tool = _TOOL.search(text)
    if tool:
        name, arguments = tool.group(1), tool.group(2)
        offered = list(tools or [])
        if name not in offered:
            return StubAnswer(f"{NO_TOOL_PREFIX}{name} (offered: {','.join(sorted(offered)) or '-'})", delay_s)
        return StubAnswer("", delay_s, tool_call=ToolCall(name, _json_object(arguments)))
    if CONTEXT_PROBE in text and context is not None:
        return StubAnswer(context.report(), delay_s)
    return StubAnswer(REPLY_PREFIX + text, delay_s)


def _json_object(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return "{}"
    return json.dumps(value) if isinstance(value, dict) else "{}"


def tool_result(messages: Sequence[object]) -> str | None:
    """The newest tool result after the newest real user turn (our tool call was answered), else None.

    OpenClaw may add its own context messages after the tool's, so the result need not be last."""
    results: list[str] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        text = content_text(message.get("content"))
        if message.get("role") == "user" and not text.lstrip().startswith(_INTERNAL_CONTEXT):
            results = []
        elif message.get("role") == "tool":
            results.append(text)
    return results[-1] if results else None


def offered_tools(body: Mapping[str, Any]) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def _message(answer: StubAnswer, call_id: str) -> dict[str, Any]:
    if answer.tool_call is None:
        return {"role": "assistant", "content": answer.text}
    function = {"name": answer.tool_call.name, "arguments": answer.tool_call.arguments}
    call = {"id": f"{call_id}-tool", "type": "function", "function": function}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def _finish(answer: StubAnswer) -> str:
    return "tool_calls" if answer.tool_call is not None else "stop"


def completion(answer: StubAnswer, model: str, call_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": _message(answer, call_id), "finish_reason": _finish(answer)}],
        "usage": _usage(answer),
    }


def completion_chunks(answer: StubAnswer, model: str, call_id: str, *, usage: bool) -> Iterator[dict[str, Any]]:
    """The SSE chunks of one streamed answer: role, the text in two deltas (or the tool call), stop, usage."""
    base = {"id": call_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    if answer.tool_call is not None:
        call = _message(answer, call_id)["tool_calls"][0]
        deltas: list[dict[str, Any]] = [
            {"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]},
        ]
    else:
        middle = len(answer.text) // 2
        deltas = [{"role": "assistant", "content": ""}, {"content": answer.text[:middle]}]
        deltas.append({"content": answer.text[middle:]})
    for delta in deltas:
        yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": _finish(answer)}]}
    if usage:
        yield {**base, "choices": [], "usage": _usage(answer)}


def _usage(answer: StubAnswer) -> dict[str, int]:
    completion_tokens = max(1, len(answer.text) // 4)
    return {"prompt_tokens": 10, "completion_tokens": completion_tokens, "total_tokens": 10 + completion_tokens}


class _CallLog:
    """Appends one JSON line per model call; the sequence number is how tests count calls."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, entry: dict[str, Any]) -> int:
        with self._lock:
            self._seq += 1
            if self._path is not None:
                # 0600: the log holds conversation text.
                with open(self._path, "a", encoding="utf-8", opener=_private) as handle:
                    handle.write(json.dumps({"seq": self._seq, "ts": time.time(), **entry}) + "\n")
            return self._seq


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


def _turns_for_log(messages: Sequence[object]) -> list[dict[str, str]]:
    turns = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") != "system":
            text = content_text(message.get("content"))
            turns.append({"role": str(message.get("role")), "text": text[:_LOGGED_TEXT_CHARS]})
    return turns


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StubLLMServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write("stub-llm: " + (format % args) + "\n")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in {"/v1/models", "/models"}:
            model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "factory"}
            self._json(HTTPStatus.OK, {"object": "list", "data": [model]})
        elif path in {"/healthz", "/readyz"}:
            self._json(HTTPStatus.OK, {"ok": True})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            body = None
        if not path.endswith("/chat/completions"):
            self._json(HTTPStatus.NOT_FOUND, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._json(HTTPStatus.BAD_REQUEST, {"error": {"message": "messages: required list", "type": "invalid"}})
            return
        self._chat(body)

    def _chat(self, body: dict[str, Any]) -> None:
        messages: list[object] = body["messages"]
        seeded, text = split_history(user_text(messages))
        context = context_seen(messages, seeded)
        result = tool_result(messages)
        if result is not None:
            answer = StubAnswer(TOOL_RESULT_PREFIX + result[:_LOGGED_TEXT_CHARS], 0.0)
        else:
            answer = answer_for(text, context, offered_tools(body))
        stream = bool(body.get("stream"))
        seq = self.server.calls.record(
            {
                "path": self.path,
                "model": body.get("model"),
                "stream": stream,
                "user_text": text[:_LOGGED_TEXT_CHARS],
                "reply": answer.text[:_LOGGED_TEXT_CHARS],
                "tool_call": None if answer.tool_call is None else answer.tool_call.name,
                "earlier_user_turns": context.earlier_user_turns,
                "seeded_turns": len(seeded),
                "markers": list(context.markers),
                "turns": _turns_for_log(messages),
            }
        )
        if answer.delay_s:
            time.sleep(answer.delay_s)
        if answer.fail_status is not None:
            error = {"message": answer.text, "type": "stub_failure", "code": answer.fail_status}
            self._json(HTTPStatus(answer.fail_status), {"error": error})
            return
        model = str(body.get("model") or MODEL_ID)
        call_id = f"chatcmpl-stub-{seq}"
        if not stream:
            self._json(HTTPStatus.OK, completion(answer, model, call_id))
            return
        options = body.get("stream_options")
        usage = isinstance(options, dict) and bool(options.get("include_usage"))
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No Content-Length on a stream: the end of the body is the end of the connection.
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in completion_chunks(answer, model, call_id, usage=usage):
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class StubLLMServer(ThreadingHTTPServer):
    """The stub as an in-process server: ``serve_forever()`` in a thread, ``shutdown()`` to stop."""

    daemon_threads = True

    def __init__(self, port: int = 0, *, log_path: Path | None = None, verbose: bool = False) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.calls = _CallLog(log_path)
        self.verbose = verbose

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class StubLLMProcess:
    """The stub as a child process (what ``factory run`` and the gateway fixture use)."""

    def __init__(self, process: ManagedProcess, port: int, log_path: Path) -> None:
        self._process = process
        self.port = port
        self.log_path = log_path

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL to configure as the gateway's model provider."""
        return f"http://127.0.0.1:{self.port}/v1"

    @classmethod
    def start(
        cls,
        log_path: Path,
        *,
        output: Path,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        port: int = 0,
        ready_timeout_s: float = 20.0,
    ) -> Self:
        """Spawn ``python -m gateway.stub_llm``; returns once it printed its ready line.

        ``env`` defaults to just enough to import this package (its ``PYTHONPATH``/``PATH``).
        Call it from the main thread (see ``gateway.process``); :meth:`astart` is the async twin.
        """
        process = cls._spawn(log_path, output, python, env, port)
        return cls._ready(process, log_path, output, ready_timeout_s)

    @classmethod
    async def astart(
        cls, log_path: Path, *, output: Path, python: str = sys.executable, ready_timeout_s: float = 20.0
    ) -> Self:
        """:meth:`start` for an anyio program: spawned from the event loop's (main) thread, so it lives
        as long as we do and no longer; the wait for its ready line runs in a worker thread."""
        process = cls._spawn(log_path, output, python, None, 0)
        with anyio.CancelScope(shield=True):  # started means stopped: never lose the handle to a cancel
            stub = await anyio.to_thread.run_sync(cls._ready, process, log_path, output, ready_timeout_s)
        return stub

    @classmethod
    def _spawn(
        cls, log_path: Path, output: Path, python: str, env: Mapping[str, str] | None, port: int
    ) -> ManagedProcess:
        args = [python, "-m", "gateway.stub_llm", "--port", str(port), "--log", str(log_path)]
        child_env = dict(env) if env is not None else _import_env()
        return ManagedProcess.spawn("stub-llm", args, env=child_env, cwd=Path.cwd(), output=output, stdout_pipe=True)

    @classmethod
    def _ready(cls, process: ManagedProcess, log_path: Path, output: Path, ready_timeout_s: float) -> Self:
        try:
            ready = _read_line(process.stdout, ready_timeout_s)
            if not ready.startswith(READY_PREFIX + " port="):
                raise RuntimeError(f"stub LLM did not start (exit {process.exit_code()}); see {output}")
            return cls(process, int(ready.rsplit("=", 1)[1]), log_path)
        except BaseException:
            process.stop(grace_s=2)
            raise

    def stop(self) -> None:
        self._process.stop(grace_s=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _import_env() -> dict[str, str]:
    # The child must import gateway exactly as this process did, wherever it runs from.
    package_root = str(Path(__file__).resolve().parents[1])
    return {"PYTHONPATH": package_root, "PATH": os.defpath, "PYTHONUNBUFFERED": "1"}


def _read_line(fd: int, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.stub_llm", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="loopback port; 0 picks a free one")
    parser.add_argument("--log", type=Path, default=None, help="append one JSON line per model call here")
    parser.add_argument("--verbose", action="store_true", help="access log on stderr")
    args = parser.parse_args(argv)
    server = StubLLMServer(args.port, log_path=args.log, verbose=args.verbose)
    print(f"{READY_PREFIX} port={server.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
