"""The API served on loopback from a background event loop, and a client whose every answer is
checked against the OpenAPI document the server serves (its status documented for the operation,
its body valid against the documented schema, formats included)."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from lockertools.api.app import ApiOptions, create_api_app
from lockertools.service import db

DOC_URI = "urn:lockertools:api:openapi"


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


class Contract:
    """The OpenAPI document and the checks of answers (and webhook bodies) against it."""

    def __init__(self, document: dict[str, Any]) -> None:
        validate_spec(document)  # raises on a document that is not valid OpenAPI 3.1
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
        self._paths = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"), template)
            for template in document["paths"]
        ]
        self.checked = 0

    def _validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator(
            {"$ref": f"{DOC_URI}#{pointer}"}, registry=self.registry, format_checker=FormatChecker()
        )

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def check(self, method: str, path: str, answer: Answer) -> None:
        template = next((t for rx, t in self._paths if rx.match(path.split("?")[0])), None)
        assert template is not None, f"{path} is not in the document"
        operation = self.document["paths"][template][method.lower()]
        responses = operation["responses"]
        assert str(answer.status) in responses, f"{method} {template}: {answer.status} is not documented"
        response = self._resolve(responses[str(answer.status)])
        content_type = answer.headers.get_content_type()
        content = response.get("content", {})
        assert content_type in content, f"{method} {template} {answer.status}: {content_type} not documented"
        schema = content[content_type].get("schema")
        if schema is not None:
            pointer = "/" + "/".join(
                p.replace("~", "~0").replace("/", "~1")
                for p in ("paths", template, method.lower(), "responses", str(answer.status))
            )
            if "$ref" in responses[str(answer.status)]:
                pointer = responses[str(answer.status)]["$ref"].removeprefix("#")
            self._validator(pointer + "/content/" + content_type.replace("/", "~1") + "/schema").validate(answer.json)
        self.checked += 1

    def check_webhook(self, body: Any) -> None:
        pointer = "/webhooks/deliveryEvent/post/requestBody/content/application~1json/schema"
        self._validator(pointer).validate(body)


class ApiServer:
    """create_api_app mounted at /api/v1/ as the desk and `lockerctl api serve` mount it."""

    def __init__(
        self, database: str | Path | None, options: ApiOptions | None = None, connection: db.Connection | None = None
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="api-loop", daemon=True)
        self._thread.start()
        root = web.Application()
        root.add_subapp("/api/v1/", create_api_app(database, connection=connection, options=options))
        self._runner = web.AppRunner(root)
        self.port = self._call(self._start())
        raw = self.request("GET", "/openapi.json", check=False)
        assert raw.status == 200
        self.contract = Contract(raw.json)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    async def _start(self) -> int:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return int(self._runner.addresses[0][1])

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        check: bool = True,
    ) -> Answer:
        sent = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, "/api/v1" + path, body=data, headers=sent)
            response = conn.getresponse()
            answer = Answer(response.status, response.headers, response.read().decode())
        finally:
            conn.close()
        if check:
            self.contract.check(method, path, answer)
        return answer

    def close(self) -> None:
        try:
            self._call(self._runner.cleanup())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
