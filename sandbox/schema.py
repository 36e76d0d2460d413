"""Validation of Graph request and response bodies against the official contract schema.

The schema lives in the repository's `contracts/` folder (override with COPILOT_SETUP_SCHEMAS).
Validation failures are turned into the messages Graph itself gives for the same mistakes.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

GRAPH_SCHEMA_FILE = "graph-v1-applications.schema.json"
CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


class SchemaNotFound(RuntimeError):
    pass


def schemas_dir() -> Path:
    override = os.environ.get("COPILOT_SETUP_SCHEMAS")
    candidates = [Path(override)] if override else []
    candidates.append(CONTRACTS)
    for c in candidates:
        if (c / GRAPH_SCHEMA_FILE).exists():
            return c
    raise SchemaNotFound(
        f"Graph contract schema {GRAPH_SCHEMA_FILE} not found in {', '.join(map(str, candidates))}; "
        "set COPILOT_SETUP_SCHEMAS to the folder that holds it."
    )


@functools.lru_cache(maxsize=1)
def _graph_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((schemas_dir() / GRAPH_SCHEMA_FILE).read_text())
    return schema


@functools.lru_cache(maxsize=64)
def _validator(definition: str) -> Draft202012Validator:
    schema = _graph_schema()
    if definition not in schema["$defs"]:
        raise KeyError(f"no definition {definition!r} in the Graph contract schema")
    wrapper = {"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"}
    return Draft202012Validator(wrapper)


def load() -> None:
    """Read the schema now (blocking), so a missing file fails at start, not on the first request."""
    _graph_schema()


def errors(definition: str, instance: Any) -> list[ValidationError]:
    return sorted(_validator(definition).iter_errors(instance), key=lambda e: (len(e.path), str(e.path)))


def _leaf(error: ValidationError) -> ValidationError:
    """The most specific cause: inside anyOf/oneOf, the branch that is not just `null`."""
    if error.context:
        candidates = [e for e in error.context if not (e.validator == "type" and e.validator_value == "null")]
        if candidates:
            return _leaf(max(candidates, key=lambda e: len(e.absolute_path)))
    return error


def _unexpected(error: ValidationError) -> list[str]:
    props = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    patterns = error.schema.get("patternProperties", {}) if isinstance(error.schema, dict) else {}
    instance = error.instance if isinstance(error.instance, dict) else {}
    return [k for k in instance if k not in props and not any(re.search(p, k) for p in patterns)]


def graph_message(error: ValidationError, resource: str = "Application") -> str:
    """The message Graph gives for this kind of mistake (microsoft-apis.md §2.3)."""
    top = [str(p) for p in error.absolute_path]
    leaf = _leaf(error)
    path = [str(p) for p in leaf.absolute_path]
    if leaf.validator == "additionalProperties":
        names = _unexpected(leaf) or ["?"]
        if not path:
            return f"Invalid property '{names[0]}'."
        owner = next((p for p in reversed(path) if not p.isdigit()), resource)
        type_name = owner[0].upper() + owner[1:]
        return (
            f"The property '{names[0]}' does not exist on type 'Microsoft.DirectoryServices.{type_name}'. "
            "Make sure to only use property names that are defined by the type or mark the type as open type."
        )
    if leaf.validator == "required" and not path:
        missing = [r for r in leaf.validator_value if r not in (leaf.instance or {})]
        return f"A value is required for property '{missing[0] if missing else '?'}' of resource '{resource}'."
    if top:
        return f"Invalid value specified for property '{top[0]}' of resource '{resource}'."
    return "One or more properties contains invalid values."
