"""Relays Slate's deliveries to a chat channel's incoming webhook (Slack, Mattermost,
Rocket.Chat and others accept `{"text": "..."}`).

    SLATE_WEBHOOK_SECRET=whsec_... CHAT_WEBHOOK_URL=https://chat.example/hooks/xyz \
        python chat_relay.py 8082

Subscribe it in Slate to the events the channel should hear, for example
`run.succeeded,run.failed,stage.waiting,endpoint.down`. It verifies each delivery,
answers Slate at once, and posts one line per event. A repeated delivery (same
`webhook-id`) is posted once.
"""

import json
import os
import sys
import threading
import urllib.request
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slate_verify import BadDelivery, verify

MAX_BODY = 1 << 20
SEEN_MAX = 10_000


def describe(event: dict) -> str | None:
    """One chat line for an event, or None to stay quiet."""
    kind, d = event.get("type", ""), event.get("data", {})
    link = f" <{d['run_url']}|open>" if d.get("run_url") else ""
    pipeline = (d.get("pipeline") or {}).get("title") or (d.get("pipeline") or {}).get("name")
    if kind == "run.succeeded":
        return f":white_check_mark: Run of {pipeline} succeeded{link}"
    if kind == "run.failed":
        return f":x: Run of {pipeline} failed{link}"
    if kind == "run.cancelled":
        return f":no_entry_sign: Run of {pipeline} was cancelled{link}"
    if kind == "stage.waiting":
        return f":raising_hand: Stage {d.get('stage')} waits for a person: {d.get('status_message')}{link}"
    if kind == "stage.failed":
        return f":warning: Stage {d.get('stage')} failed: {d.get('status_message')}{link}"
    if kind == "output.created":
        return f":film_frames: New {d.get('kind')} {d.get('name')} from stage {d.get('stage')}{link}"
    if kind == "endpoint.up":
        return ":large_green_circle: The Colab GPU endpoint is up"
    if kind == "endpoint.down":
        return f":red_circle: The Colab GPU endpoint is down ({d.get('end_reason') or d.get('state')})"
    if kind == "ping":
        return f":wave: Test event from Slate ({d.get('by')})"
    return None


def post(url: str, text: str) -> None:
    req = urllib.request.Request(
        url,
        data=json.dumps({"text": text}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        res.read()


def main(port: int) -> None:
    secret = os.environ["SLATE_WEBHOOK_SECRET"]
    chat = os.environ["CHAT_WEBHOOK_URL"]
    seen: OrderedDict[str, None] = OrderedDict()
    lock = threading.Lock()

    class Relay(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_error(413, "too large")
                return
            body = self.rfile.read(length)
            try:
                msg_id = verify(secret, self.headers, body)
                event = json.loads(body)
            except (BadDelivery, ValueError) as e:
                self.send_error(401, str(e))
                return
            with lock:
                repeated = msg_id in seen
                seen[msg_id] = None
                while len(seen) > SEEN_MAX:
                    seen.popitem(last=False)
            text = None if repeated else describe(event)
            if text:
                try:
                    post(chat, text)
                except OSError as e:
                    # Let Slate retry later: its log shows this answer.
                    with lock:
                        seen.pop(msg_id, None)
                    self.send_error(502, f"the chat webhook failed: {e}")
                    return
            self.send_response(204)
            self.end_headers()

    ThreadingHTTPServer(("0.0.0.0", port), Relay).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8082)
