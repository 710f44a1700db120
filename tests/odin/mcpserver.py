#!/usr/bin/env python3
"""A minimal stdio MCP server for tests: answers `initialize`, `tools/list` (one tool, `ping`),
`tools/call` and `ping`; ignores notifications; exits when stdin closes. It stays alive when
its client dies without closing the pipe (SIGKILL of the client leaves it reparented), which
is the orphaned MCP server the claude-process-exporter test needs. With `--ignore-eof` it
keeps running after stdin closes and ignores the hangup of its terminal too (an MCP server
that outlives its session); with
`--listen` it also listens on a TCP port of 127.0.0.1 and holds one connection to it open
(a server with a port of its own and an established connection, both loopback)."""
import json
import signal
import socket
import sys
import time


def reply(msg_id, result):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": result}) + "\n")
    sys.stdout.flush()


def main() -> None:
    listener, held = None, []
    if "--ignore-eof" in sys.argv:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if "--listen" in sys.argv:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        held = [socket.create_connection(listener.getsockname())]
        held.append(listener.accept()[0])
    for line in sys.stdin:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        method, msg_id = msg.get("method"), msg.get("id")
        if msg_id is None:
            continue
        if method == "initialize":
            reply(msg_id, {"protocolVersion": msg.get("params", {}).get("protocolVersion", "2025-06-18"),
                           "capabilities": {"tools": {}},
                           "serverInfo": {"name": "odin-test-mcp", "version": "1.0"}})
        elif method == "tools/list":
            reply(msg_id, {"tools": [{"name": "ping", "description": "Answers pong.",
                                      "inputSchema": {"type": "object", "properties": {}}}]})
        elif method == "tools/call":
            reply(msg_id, {"content": [{"type": "text", "text": "pong"}]})
        else:
            reply(msg_id, {})
    if "--ignore-eof" in sys.argv:
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
