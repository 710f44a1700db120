"""A small fake Anthropic Messages API on loopback, for running the real Claude Code client.

    api = FakeAnthropic(usages=[Usage(...), ...])   # or usage_for=callable(n, body)
    api.start(); ... ANTHROPIC_BASE_URL=api.url ...; api.stop()
    api.replies          every Messages response it handed out: message id, request id, model,
                         usage, streamed or not, and the request's summary
    api.unknown          (method, path) of every request it had no answer for (answered 404)

POST /v1/messages answers non-streaming (JSON) and streaming (server-sent events:
message_start with the input-side usage and output_tokens 1, content_block_start/delta/stop,
message_delta with the final usage, message_stop) requests. Every response gets a unique
message id (`msg_fake...`) and request id (`req_fake...`, also the `request-id` header), so
a test can tell the responses Claude Code wrote into its transcripts from auxiliary ones.

The reply's content comes from `script(body) -> list of blocks` (default: a text "ok").
`tool_then_text` answers the first turn with a tool_use of Bash (or of Agent, starting a
subagent that runs Bash, when the prompt contains DELEGATE) and the turn after the tool result
with text, so one session makes several requests and may write a subagent's file. POST /v1/messages/count_tokens
answers a rough estimate; GET /v1/models lists a few models; anything else is logged.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Usage:
    """One response's usage as the API reports it (cache writes split by duration)."""
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    def api(self, output: int | None = None) -> dict:
        """The `usage` object of a Messages response (`output` overrides output_tokens)."""
        return {
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": self.cache_write_5m,
                               "ephemeral_1h_input_tokens": self.cache_write_1h},
            "output_tokens": self.output if output is None else output,
            "service_tier": "standard",
        }

    def by_type(self) -> dict[str, int]:
        """Keyed like llm_tokens_total's `type` label."""
        return {"input": self.input, "output": self.output, "cache_read": self.cache_read,
                "cache_write_5m": self.cache_write_5m, "cache_write_1h": self.cache_write_1h}

    def __add__(self, o: "Usage") -> "Usage":
        return Usage(self.input + o.input, self.output + o.output, self.cache_read + o.cache_read,
                     self.cache_write_5m + o.cache_write_5m, self.cache_write_1h + o.cache_write_1h)


def distinct_usage(n: int, body: dict | None = None) -> Usage:
    """The default: a different usage for every response (n = 0, 1, ...), every type non-zero,
    so that a response counted twice or missed shows in every total."""
    return Usage(input=11 + 7 * n, output=23 + 5 * n, cache_read=1009 + 131 * n,
                 cache_write_5m=307 + 17 * n, cache_write_1h=211 + 13 * n)


@dataclass
class Reply:
    message_id: str
    request_id: str
    model: str
    usage: Usage
    stream: bool
    path: str
    blocks: list
    summary: str  # what the request looked like: tools offered, last message's kind


def text_reply(body: dict) -> list[dict]:
    return [{"type": "text", "text": "ok"}]


def _last_user_has_tool_result(body: dict) -> bool:
    """Whether the last user message answers a tool_use (subagents' conversations may end
    with a system message after it)."""
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    if not users:
        return False
    content = users[-1].get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content)


def _first_user_text(body: dict) -> str:
    msgs = body.get("messages") or []
    content = msgs[0].get("content") if msgs else ""
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content or ""


DELEGATE = "DELEGATE-TO-A-SUBAGENT"


def tool_then_text(command: str = "echo hi", subagent_model: str | None = None):
    """A script: when the last user message is a tool result, the final text answer; else,
    when the conversation's first message contains DELEGATE and the Agent tool is offered, a
    tool_use of Agent (a subagent, on the parent's model unless `subagent_model` names an
    alias such as `haiku`, whose own conversation then runs Bash); else, when Bash is offered, a tool_use of Bash running `command`; else text."""
    counter = itertools.count()

    def script(body: dict) -> list[dict]:
        offered = {t.get("name") for t in body.get("tools") or []}
        if _last_user_has_tool_result(body):
            return [{"type": "text", "text": "done: hi"}]
        if "Agent" in offered and DELEGATE in _first_user_text(body):
            return [{"type": "text", "text": "Delegating."},
                    {"type": "tool_use", "id": f"toolu_fake{next(counter):06d}", "name": "Agent",
                     "input": {"description": "Say hi", "prompt": "say hi using the shell",
                               "subagent_type": "general-purpose", "run_in_background": False,
                               **({"model": subagent_model} if subagent_model else {})}}]
        if "Bash" in offered:
            return [{"type": "text", "text": "Running it."},
                    {"type": "tool_use", "id": f"toolu_fake{next(counter):06d}", "name": "Bash",
                     "input": {"command": command, "description": "Print hi"}}]
        return [{"type": "text", "text": "done: hi"}]
    return script


MODELS = ["claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101", "claude-haiku-4-5-20251001"]


class FakeAnthropic:
    def __init__(self, usages: list[Usage] | None = None, usage_for=None, script=None,
                 host: str = "127.0.0.1", port: int = 0, event_delay: float = 0.0):
        """`usages`: the usage of the n-th response (distinct_usage past the list's end);
        `usage_for(n, body)`: computes it instead. `event_delay` > 0 streams the events one
        by one (chunked), pausing that many seconds after each content block, so that the
        client sees a block end before the final usage arrives."""
        self.event_delay = event_delay
        if usage_for is None:
            fixed = list(usages or [])
            usage_for = (lambda n, body: fixed[n] if n < len(fixed) else distinct_usage(n, body))
        self.usage_for = usage_for
        self.script = script or text_reply
        self.replies: list[Reply] = []
        self.unknown: list[tuple[str, str]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self._lock = threading.Lock()
        self._n = itertools.count()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeAnthropic":
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def by_id(self) -> dict[str, Reply]:
        return {r.message_id: r for r in self.replies}

    def _next(self, body: dict, stream: bool, path: str) -> Reply:
        with self._lock:
            n = next(self._n)
            blocks = self.script(body)
            tools = sorted(t.get("name", "?") for t in body.get("tools") or [])
            last = (body.get("messages") or [{}])[-1]
            kind = ("tool_result" if _last_user_has_tool_result(body)
                    else last.get("role", "?"))
            reply = Reply(message_id=f"msg_fake{n:06d}", request_id=f"req_fake{n:06d}",
                          model=body.get("model", "claude-sonnet-4-5"),
                          usage=self.usage_for(n, body), stream=stream, path=path, blocks=blocks,
                          summary=f"{len(tools)} tools, last message {kind}")
            self.replies.append(reply)
            return reply


def _message(reply: Reply, content: list, usage: dict, stop_reason) -> dict:
    return {"id": reply.message_id, "type": "message", "role": "assistant",
            "model": reply.model, "content": content, "stop_reason": stop_reason,
            "stop_sequence": None, "usage": usage}


def _stop_reason(blocks: list) -> str:
    return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"


def sse_body(reply: Reply) -> bytes:
    """The server-sent events of a streamed response."""
    return b"".join(sse_events(reply))


def sse_events(reply: Reply) -> list[bytes]:
    """The server-sent events of a streamed response, one bytes object each."""
    events: list[tuple[str, dict]] = []
    start_usage = reply.usage.api(output=1)
    events.append(("message_start", {"type": "message_start",
                                     "message": _message(reply, [], start_usage, None)}))
    events.append(("ping", {"type": "ping"}))
    for i, block in enumerate(reply.blocks):
        if block["type"] == "text":
            events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {"type": "text", "text": ""}}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                   "delta": {"type": "text_delta", "text": block["text"]}}))
        else:
            events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                   "content_block": {**block, "input": {}}}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                   "delta": {"type": "input_json_delta",
                                                             "partial_json": json.dumps(block["input"])}}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    final = reply.usage.api()
    final.pop("service_tier")
    events.append(("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": _stop_reason(reply.blocks),
                                               "stop_sequence": None},
                                     "usage": final}))
    events.append(("message_stop", {"type": "message_stop"}))
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


def _handler(api: FakeAnthropic):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json",
                  headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj, headers: dict | None = None) -> None:
            self._send(status, json.dumps(obj).encode(), headers=headers)

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                return {}

        def _path(self) -> str:
            return self.path.split("?", 1)[0]

        def do_GET(self):
            path = self._path()
            with api._lock:
                api.requests.append(("GET", path))
            if path == "/v1/models":
                self._json(200, {"data": [{"type": "model", "id": m, "display_name": m,
                                           "created_at": "2025-01-01T00:00:00Z"} for m in MODELS],
                                 "has_more": False, "first_id": MODELS[0], "last_id": MODELS[-1]})
            elif path.startswith("/v1/models/"):
                m = path.rsplit("/", 1)[1]
                self._json(200, {"type": "model", "id": m, "display_name": m,
                                 "created_at": "2025-01-01T00:00:00Z"})
            else:
                self._unknown("GET", path)

        def do_HEAD(self):
            self._send(200, b"")

        def do_POST(self):
            path = self._path()
            body = self._body()
            with api._lock:
                api.requests.append(("POST", path))
            if path == "/v1/messages":
                stream = bool(body.get("stream"))
                reply = api._next(body, stream, path)
                headers = {"request-id": reply.request_id}
                if stream and api.event_delay > 0:
                    self._stream(sse_events(reply), headers)
                elif stream:
                    headers["Cache-Control"] = "no-cache"
                    self._send(200, sse_body(reply), "text/event-stream", headers)
                else:
                    self._json(200, _message(reply, reply.blocks, reply.usage.api(),
                                             _stop_reason(reply.blocks)), headers)
            elif path == "/v1/messages/count_tokens":
                self._json(200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
            else:
                self._unknown("POST", path)

        def _stream(self, events: list[bytes], headers: dict) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            for ev in events:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                self.wfile.flush()
                if ev.startswith(b"event: content_block_stop"):
                    time.sleep(api.event_delay)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _unknown(self, method: str, path: str) -> None:
            with api._lock:
                api.unknown.append((method, path))
            self._json(404, {"type": "error", "error": {"type": "not_found_error",
                                                         "message": f"fake API: no {method} {path}"}})

    return Handler
