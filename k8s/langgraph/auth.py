"""Custom auth of Slate's LangGraph server: every request but the health and info routes
(/ok, /info, /docs, which LangGraph leaves open) must carry ``Authorization: Bearer
<token>``, the token being the server's ``LANGGRAPH_AUTH_TOKEN`` (the value Slate has as
``SLATE_LANGGRAPH_TOKEN``). A server started without the variable refuses everyone rather
than letting everyone in.
"""

import hmac
import os

from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    expected = os.environ.get("LANGGRAPH_AUTH_TOKEN", "")
    scheme, _, token = (authorization or "").partition(" ")
    if not expected:
        raise Auth.exceptions.HTTPException(status_code=401, detail="This server has no LANGGRAPH_AUTH_TOKEN: every request is refused.")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Auth.exceptions.HTTPException(status_code=401, detail="A valid bearer token is required.")
    return {"identity": "slate", "permissions": []}
