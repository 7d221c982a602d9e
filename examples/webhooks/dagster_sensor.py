"""Slate's deliveries as a Dagster sensor.

Dagster sensors poll; Slate pushes. So this file has two halves:

1. `serve()`: a tiny receiver (standard library) that verifies each delivery and appends
   it, one JSON object per line, to an inbox file on storage the Dagster code location
   can read. It answers 2xx at once: the work happens in Dagster.

       SLATE_WEBHOOK_SECRET=whsec_... python dagster_sensor.py serve 8081 /data/slate/inbox.jsonl

2. `slate_output_sensor`: a Dagster sensor that reads new lines from the inbox (its
   cursor is the byte offset reached) and asks for one run of `ingest_slate_output` per
   `output.created` event. The run key is the delivery's `webhook-id`, so a delivery that
   Slate sent twice (deliveries are at least once) launches one run.

Load the second half in a code location (`dagster dev -f dagster_sensor.py`), with
SLATE_INBOX pointing at the same file. Subscribe the receiver in Slate to
`output.created` (and add its host to SLATE_WEBHOOK_ALLOW if it runs in the cluster).
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from slate_verify import BadDelivery, verify

INBOX = os.environ.get("SLATE_INBOX", "/data/slate/inbox.jsonl")
MAX_BODY = 1 << 20


def serve(port: int, inbox: str) -> None:
    secret = os.environ["SLATE_WEBHOOK_SECRET"]

    class Receiver(BaseHTTPRequestHandler):
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
            line = json.dumps({"webhook_id": msg_id, **event}) + "\n"
            # One write per line, in append mode: the sensor never reads half a line
            # unless the receiver dies mid-write, and it skips a line it cannot parse.
            with open(inbox, "a", encoding="utf-8") as f:
                f.write(line)
            self.send_response(204)
            self.end_headers()

    ThreadingHTTPServer(("0.0.0.0", port), Receiver).serve_forever()


# The Dagster half. Imported lazily so that the receiver runs without Dagster installed.
try:
    import dagster as dg
except ImportError:  # pragma: no cover - the receiver alone
    dg = None

if dg is not None:

    @dg.op(config_schema={"asset_id": str, "name": str, "run_url": str})
    def ingest(context: dg.OpExecutionContext) -> None:
        cfg = context.op_config
        context.log.info(f"Slate made {cfg['name']} ({cfg['asset_id']}), see {cfg['run_url']}")

    @dg.job
    def ingest_slate_output():
        ingest()

    @dg.sensor(job=ingest_slate_output, minimum_interval_seconds=10)
    def slate_output_sensor(context: dg.SensorEvaluationContext):
        offset = int(context.cursor or 0)
        if not os.path.exists(INBOX):
            return dg.SkipReason(f"no inbox at {INBOX} yet")
        with open(INBOX, "rb") as f:
            f.seek(offset)
            lines = f.readlines()
        requests = []
        for raw in lines:
            if not raw.endswith(b"\n"):
                break  # being written: read it next time
            offset += len(raw)
            try:
                event = json.loads(raw)
            except ValueError:
                context.log.warning("skipped a line that is not JSON")
                continue
            if event.get("type") != "output.created":
                continue
            data = event["data"]
            requests.append(
                dg.RunRequest(
                    run_key=event["webhook_id"],
                    run_config={
                        "ops": {
                            "ingest": {
                                "config": {
                                    "asset_id": data["asset_id"],
                                    "name": data.get("name") or "",
                                    "run_url": data.get("run_url") or "",
                                }
                            }
                        }
                    },
                    tags={"slate/run": data["run_id"], "slate/asset": data["asset_id"]},
                )
            )
        context.update_cursor(str(offset))
        return requests or dg.SkipReason("no new outputs from Slate")

    defs = dg.Definitions(jobs=[ingest_slate_output], sensors=[slate_output_sensor])


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]) if len(sys.argv) > 2 else 8081, sys.argv[3] if len(sys.argv) > 3 else INBOX)
    else:
        sys.exit("usage: python dagster_sensor.py serve [PORT] [INBOX]")
