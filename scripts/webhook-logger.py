#!/usr/bin/env python3
"""webhook-logger: a webhook receiver for Alertmanager that prints every notification it gets.

Each alert of each notification becomes one JSON line on stdout:

    {"time": "...", "path": "/odin/critical", "receiver": "odin-critical", "status": "firing",
     "labels": {...}, "annotations": {...}, "startsAt": "...", "endsAt": "...",
     "fingerprint": "...", "groupKey": "..."}

`status` is the alert's own (firing or resolved), `path` the URL path the notification was
posted to (deploy/alertmanager/alertmanager.yml gives each receiver its own). With --file,
the same lines are also appended to that file. A body that is not Alertmanager's webhook JSON
is answered 400 and printed as one line with an `error`. GET answers 200 (for readiness
checks). Standard library only; stops on SIGINT or SIGTERM with exit status 0.

    scripts/webhook-logger.py                          # 127.0.0.1:5001, stdout only
    scripts/webhook-logger.py --listen 127.0.0.1:0 --file /tmp/notifications.jsonl
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 16 << 20  # Alertmanager truncates long groups; 16 MiB is far beyond any.


class Sink:
    """Writes whole lines to stdout and, if given, to a file, one writer at a time."""

    def __init__(self, path: str | None):
        self.lock = threading.Lock()
        self.file = open(path, "a", encoding="utf-8") if path else None

    def write(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, ensure_ascii=False)
        with self.lock:
            print(line, flush=True)
            if self.file:
                self.file.write(line + "\n")
                self.file.flush()


def records(path: str, body: dict) -> list[dict]:
    """One record per alert of a webhook notification; ValueError if it is not one."""
    alerts = body.get("alerts") if isinstance(body, dict) else None
    if not isinstance(alerts, list):
        raise ValueError("no alerts list: not an Alertmanager webhook notification")
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    out = []
    for a in alerts:
        if not isinstance(a, dict):
            raise ValueError("an alert is not an object")
        out.append({
            "time": now,
            "path": path,
            "receiver": body.get("receiver"),
            "groupKey": body.get("groupKey"),
            "status": a.get("status"),
            "labels": a.get("labels") or {},
            "annotations": a.get("annotations") or {},
            "startsAt": a.get("startsAt"),
            "endsAt": a.get("endsAt"),
            "fingerprint": a.get("fingerprint"),
        })
    return out


def handler(sink: Sink):
    class Handler(BaseHTTPRequestHandler):
        server_version = "webhook-logger"

        def _answer(self, code: int, text: str) -> None:
            data = (text + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            self._answer(200, "webhook-logger: POST Alertmanager webhook notifications here")

        def do_POST(self):  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._answer(413 if length > MAX_BODY else 411, "need a Content-Length up to 16 MiB")
                return
            raw = self.rfile.read(length)
            try:
                recs = records(self.path, json.loads(raw))
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                sink.write({"path": self.path, "error": str(e),
                            "body": raw[:200].decode("utf-8", "replace")})
                self._answer(400, f"bad notification: {e}")
                return
            for r in recs:
                sink.write(r)
            self._answer(200, "ok")

        def log_message(self, fmt, *args):  # access log off: stdout is the notifications
            pass

    return Handler


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:5001",
                    help="HOST:PORT to listen on (default 127.0.0.1:5001; port 0 picks a free one)")
    ap.add_argument("--file", help="also append every line to this file")
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    try:
        server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)),
                                     handler(Sink(args.file)))
    except (OSError, ValueError) as e:
        print(f"webhook-logger: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 1
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    h, p = server.server_address[:2]
    print(f"webhook-logger: listening on http://{h}:{p}/", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
