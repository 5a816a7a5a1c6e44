"""The integration API is served by the desk at /api/v1/, with its own checks: API tokens, not the
desk's sessions and CSRF tokens."""

from __future__ import annotations

import json

from desk_support import DeskClient, DeskServer

from lockertools.api import tokens


def test_the_api_is_mounted_at_api_v1_with_its_own_checks(desk_server: DeskServer) -> None:
    client = DeskClient(desk_server)  # no session, no CSRF token: the API's callers have neither
    document = client.get("/api/v1/openapi.json")
    assert document.status == 200 and json.loads(document.text)["openapi"].startswith("3.1")
    refused = client.get("/api/v1/lockers")
    assert refused.status == 401 and refused.location is None  # the API's answer, not the login page
    conn = desk_server.connect()
    try:
        token = tokens.create_token(conn, "e-loket", ["read"]).secret
    finally:
        conn.close()
    listed = client.get("/api/v1/lockers", {"Authorization": f"Bearer {token}"})
    assert listed.status == 200 and "lockers" in json.loads(listed.text)
    posted = client.request(
        "POST", "/api/v1/deliveries", b"{}", {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    assert posted.status == 403  # a read token may not create deliveries; the desk's CSRF check is not asked
    assert client.get("/lockers").status == 303  # the desk's own pages still need a session
