"""Checks a Slate webhook delivery (Standard Webhooks) with the standard library only.

Shared by the two examples in this folder; see docs/webhooks.md.
"""

import base64
import hashlib
import hmac
import time

TOLERANCE_SECONDS = 5 * 60


class BadDelivery(Exception):
    """The request is not a genuine, fresh delivery from Slate."""


def verify(secret: str, headers, body: bytes) -> str:
    """Returns the delivery's webhook id, or raises BadDelivery.

    `headers` is any case-insensitive mapping (http.server's `self.headers` is one);
    `body` is the raw request body, before any JSON parsing.
    """
    try:
        msg_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        signatures = headers["webhook-signature"].split()
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadDelivery(f"missing or malformed webhook headers: {e}") from None
    if abs(time.time() - timestamp) > TOLERANCE_SECONDS:
        raise BadDelivery("the timestamp is too far from now (a replay?)")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for sig in signatures:
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(expected, value):
            return msg_id
    raise BadDelivery("no signature matches the secret")
