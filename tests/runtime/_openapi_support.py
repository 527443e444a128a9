"""The OpenAPI document of the HTTP API, and checks of a response against it (shared by the OpenAPI and fuzz tests)."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_URI = "urn:ai-agents:openapi"


def load_document() -> dict[str, Any]:
    """The document as the package ships it (the file the route serves)."""
    text = resources.files("ai_agents.orchestrator").joinpath("openapi.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


DOCUMENT = load_document()
# OpenAPI 3.1 schemas are JSON Schema 2020-12; the whole document is one resource so "#/components/..." resolve.
REGISTRY: Registry[Any] = Registry().with_resource(DOC_URI, Resource.from_contents(DOCUMENT, DRAFT202012))
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    # jsonschema checks date-time only with an optional extra installed (the Timestamp schema's pattern pins the form).
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError(f"{value!r} has no time zone")
    return True


def pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` between OpenAPI objects (responses, parameters); schemas resolve through REGISTRY."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def response_validator(path: str, method: str, status: int) -> Draft202012Validator:
    """A validator for the JSON body of one documented response; fails the test if the status is undocumented."""
    responses = DOCUMENT["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, which the document does not list"
    response = resolve(responses[str(status)])
    assert "application/json" in response["content"], f"{method} {path} {status}: no JSON schema documented"
    if "$ref" in responses[str(status)]:
        base = responses[str(status)]["$ref"].removeprefix("#/").split("/")
    else:
        base = [pointer("paths", path, method.lower(), "responses", str(status))]
    location = "/".join([*base, pointer("content", "application/json", "schema")])
    return Draft202012Validator({"$ref": f"{DOC_URI}#/{location}"}, registry=REGISTRY, format_checker=FORMATS)


def document_routes() -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(m.upper(), path) for path, item in DOCUMENT["paths"].items() for m in item if m in methods}
