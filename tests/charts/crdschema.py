"""Validate rendered custom resources against the upstream CRDs' openAPIV3Schema.

Usage::

    import crdschema
    crdschema.validate(obj)            # raises CRDSchemaError, returns the CRD source that accepted obj
    crdschema.covers(obj)              # True when some CRD under CRD_SCHEMA_DIR defines obj's kind
    crdschema.known_kinds()            # {(group, version, kind), ...} served by those CRDs

CRDs are read once from the directory in the environment variable ``CRD_SCHEMA_DIR`` (default
``../shared/crds`` relative to the repository root); every ``*.yaml`` file below it is scanned for
``CustomResourceDefinition`` documents, other documents are ignored. Schemas are indexed by
(group, version, kind); each served version is indexed.

Gateway API ships a ``standard`` and an ``experimental`` channel of the same CRDs. A schema from a
``standard`` folder (or a CRD labelled ``gateway.networking.k8s.io/channel: standard``) is tried first;
the experimental schema is used only when the kind is absent from standard or the object needs a field
that standard lacks. ``validate`` returns the source (``<folder>/<file>``) of the schema that accepted
the object, so a test can insist on the standard channel by checking ``"experimental" not in source``.

Like the API server with strict field validation, unknown fields are errors: every schema node that
lists ``properties`` and neither ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields``
is closed. CEL rules (``x-kubernetes-validations``) are not evaluated; ``metadata.name`` is checked as
a DNS-1123 subdomain.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["CRDSchemaError", "covers", "known_kinds", "schema_dir", "validate"]

REPO_ROOT = Path(__file__).resolve().parents[2]
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class CRDSchemaError(AssertionError):
    """A custom resource has no known CRD or does not match its schema."""


@dataclass(frozen=True)
class _Schema:
    source: str
    experimental: bool
    validator: jsonschema.protocols.Validator


def schema_dir() -> Path:
    """The CRD directory: ``$CRD_SCHEMA_DIR`` or ``../shared/crds`` next to the repository."""
    configured = os.environ.get("CRD_SCHEMA_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "crds"
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def _close(node: Any) -> Any:
    """Copy of a structural schema where objects with known properties reject unknown ones."""
    if isinstance(node, list):
        return [_close(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _close(value) for key, value in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that reads YAML 1.1's ``=`` value tag (it appears in enum lists) as a string."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _is_experimental(path: Path, crd: dict[str, Any]) -> bool:
    labels = crd.get("metadata", {}).get("labels") or {}
    channel = labels.get("gateway.networking.k8s.io/channel")
    if channel:
        return channel != "standard"
    return "experimental" in path.parts


@functools.cache
def _index(directory: Path) -> dict[tuple[str, str, str], list[_Schema]]:
    if not directory.is_dir():
        raise CRDSchemaError(f"CRD directory {directory} not found; set CRD_SCHEMA_DIR")
    index: dict[tuple[str, str, str], list[_Schema]] = {}
    for path in sorted(directory.rglob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            for doc in yaml.load_all(handle, Loader=_Loader):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                experimental = _is_experimental(path.relative_to(directory), doc)
                for version in spec["versions"]:
                    if not version.get("served", True):
                        continue
                    raw = (version.get("schema") or {}).get("openAPIV3Schema")
                    if raw is None:
                        continue
                    schema = _close(copy.deepcopy(raw))
                    # The API server always accepts these at the root, whatever the schema lists.
                    props = schema.setdefault("properties", {})
                    props.setdefault("apiVersion", {"type": "string"})
                    props.setdefault("kind", {"type": "string"})
                    props.setdefault("metadata", {"type": "object"})
                    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
                    key = (spec["group"], version["name"], spec["names"]["kind"])
                    source = f"{path.parent.relative_to(directory)}/{path.name}"
                    index.setdefault(key, []).append(_Schema(source, experimental, cls(schema)))
    for schemas in index.values():
        schemas.sort(key=lambda s: s.experimental)  # standard first
    return index


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return group, version, str(obj.get("kind", ""))


def known_kinds() -> frozenset[tuple[str, str, str]]:
    """Every (group, version, kind) served by a CRD under ``schema_dir()``."""
    return frozenset(_index(schema_dir()))


def covers(obj: dict[str, Any]) -> bool:
    """Whether a CRD under ``schema_dir()`` defines this object's group/version/kind."""
    return _key(obj) in _index(schema_dir())


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "<root>"
    return f"at {where}: {error.message}"


def validate(obj: dict[str, Any]) -> str:
    """Validate ``obj`` against its CRD schema; return the source of the schema that accepted it.

    Raises:
        CRDSchemaError: no CRD defines the object's apiVersion/kind, its name is not a DNS-1123
            subdomain, or it violates every candidate schema (the message lists each schema's errors).
    """
    group, version, kind = key = _key(obj)
    name = (obj.get("metadata") or {}).get("name", "")
    ident = f"{kind} {name!r} ({group}/{version})"
    candidates = _index(schema_dir()).get(key)
    if not candidates:
        raise CRDSchemaError(f"{ident}: no CRD under {schema_dir()} serves this group/version/kind")
    if not (isinstance(name, str) and len(name) <= 253 and _DNS_SUBDOMAIN.match(name)):
        raise CRDSchemaError(f"{ident}: metadata.name is not a DNS-1123 subdomain")
    failures: list[str] = []
    for schema in candidates:
        errors = sorted(schema.validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        if not errors:
            return schema.source
        failures.append(f"  {schema.source}:\n" + "\n".join(f"    {_describe(e)}" for e in errors[:10]))
    raise CRDSchemaError(f"{ident} does not match its CRD schema:\n" + "\n".join(failures))
