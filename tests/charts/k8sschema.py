"""Validate built-in Kubernetes objects against the OpenAPI-derived JSON schemas, offline.

kubeconform would download its schemas from GitHub at run time; the `kubernetes-validate` package ships
the same schemas inside the wheel, so this module reads them from there. It uses the package's *strict*
variant (every object has `additionalProperties: false`), so a misspelt or misplaced field is an error,
as it is for `kubectl apply --validate=strict`.

Schemas are loaded once per kind and the validators cached: a full render of the suite has hundreds of
objects and the shared definitions file is 1.5 MB.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

import jsonschema
import referencing
import referencing.jsonschema

# The Kubernetes minor the charts target (kind's node image is kindest/node v1.34.x): the newest schema
# set kubernetes-validate ships that is not newer than 1.34. Pinned, never "latest", so a package upgrade
# cannot silently move the target.
KUBERNETES_VERSION = "1.34.0"

_SCHEMA_ROOT = "kubernetes-json-schema"


class UnknownKindError(LookupError):
    """The apiVersion/kind pair is not a built-in Kubernetes type at KUBERNETES_VERSION."""


def _schema_dir() -> Any:
    root = resources.files("kubernetes_validate").joinpath(_SCHEMA_ROOT)
    folder = root.joinpath(f"v{KUBERNETES_VERSION}-local-strict")
    if not folder.is_dir():
        shipped = sorted(p.name for p in root.iterdir() if p.name.endswith("-strict"))
        raise RuntimeError(
            f"kubernetes-validate does not ship strict schemas for Kubernetes {KUBERNETES_VERSION} "
            f"(it has: {', '.join(shipped)}); pin a kubernetes-validate that does in requirements-dev.txt"
        )
    return folder


def _file_name(api_version: str, kind: str) -> str:
    # The package names files <kind>-<group without its domain>-<version>.json, core group omitted:
    # apps/v1 Deployment -> deployment-apps-v1.json, rbac.authorization.k8s.io/v1 Role -> role-rbac-v1.json.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


@functools.cache
def _definitions() -> referencing.Resource[Any]:
    contents = json.loads(_schema_dir().joinpath("_definitions.json").read_text())
    return referencing.jsonschema.DRAFT202012.create_resource(contents)


@functools.cache
def schema(api_version: str, kind: str) -> dict[str, Any] | None:
    """The strict JSON schema of a built-in kind, or None when it is not one.

    The file name drops the group's domain, so the schema's own group-version-kind is compared too: a
    custom resource whose group shares a first label with a built-in one is not mistaken for it.
    """
    path = _schema_dir().joinpath(_file_name(api_version, kind))
    if not path.is_file():
        return None
    contents: dict[str, Any] = json.loads(path.read_text())
    group, version = _split(api_version)
    gvks = contents.get("x-kubernetes-group-version-kind", [])
    if not any(g.get("group", "") == group and g["version"] == version and g["kind"] == kind for g in gvks):
        return None
    return contents


def is_builtin(api_version: str, kind: str) -> bool:
    """True when Kubernetes KUBERNETES_VERSION serves this apiVersion/kind itself."""
    return schema(api_version, kind) is not None


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    contents = schema(api_version, kind)
    if contents is None:
        raise UnknownKindError(f"{api_version} {kind} is not a built-in kind of Kubernetes {KUBERNETES_VERSION}")
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        [
            ("https://kubernetes.io/api/_definitions.json", _definitions()),
            (contents["$id"], referencing.jsonschema.DRAFT202012.create_resource(contents)),
        ]
    )
    return jsonschema.Draft202012Validator(contents, registry=registry)


_OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@functools.cache
def _metadata_validator() -> jsonschema.protocols.Validator:
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        "https://kubernetes.io/api/_definitions.json", _definitions()
    )
    return jsonschema.Draft202012Validator({"$ref": _OBJECT_META}, registry=registry)


def metadata_errors(obj: dict[str, Any]) -> list[str]:
    """Violations of `metadata` against the strict ObjectMeta schema, for objects of any kind.

    CRD schemas leave `metadata` open, so a custom resource's `metadata.lables` would otherwise pass.
    """
    validator = _metadata_validator()
    return [
        f"metadata.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}".replace("metadata.:", "metadata:")
        for e in validator.iter_errors(obj.get("metadata") or {})
    ]


def errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of one built-in object as `path: message`; empty when it is valid.

    Raises UnknownKindError when the object's kind is not built in (validate it as a custom resource).
    """
    validator = _validator(obj.get("apiVersion", ""), obj.get("kind", ""))
    found = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        found.append(f"{path}: {error.message}")
    return found


def validate(obj: dict[str, Any]) -> None:
    """Raise AssertionError listing every violation when a built-in object does not match its schema."""
    found = errors(obj)
    if found:
        name = obj.get("metadata", {}).get("name", "?")
        raise AssertionError(
            f"{obj.get('kind')} {name} does not match the Kubernetes {KUBERNETES_VERSION} schema:\n  "
            + "\n  ".join(found)
        )
