"""Validation of Graph request and response bodies against the official contract schema.

The schema lives in `../shared/schemas/` beside the project root (override with COPILOT_SETUP_SCHEMAS).
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


class SchemaNotFound(RuntimeError):
    pass


def schemas_dir() -> Path:
    override = os.environ.get("COPILOT_SETUP_SCHEMAS")
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "schemas")
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


_UNEXPECTED = re.compile(r"\('([^']+)'")


def graph_message(error: ValidationError, resource: str = "Application") -> str:
    """The message Graph gives for this kind of mistake (microsoft-apis.md §2.3)."""
    path = [str(p) for p in error.path]
    if error.validator == "additionalProperties":
        names = _UNEXPECTED.findall(error.message) or ["?"]
        if not path:
            return f"Invalid property '{names[0]}'."
        owner = path[-1] if not path[-1].isdigit() else path[-2]
        type_name = owner[0].upper() + owner[1:]
        return (
            f"The property '{names[0]}' does not exist on type 'Microsoft.DirectoryServices.{type_name}'. "
            "Make sure to only use property names that are defined by the type or mark the type as open type."
        )
    if error.validator == "required" and not path:
        match = _UNEXPECTED.findall(error.message)
        prop = match[0] if match else "?"
        return f"A value is required for property '{prop}' of resource '{resource}'."
    if error.validator in ("not", "false") or (error.validator == "readOnly"):
        return f"Property '{path[0] if path else '?'}' is read-only and cannot be set."
    if path:
        return f"Invalid value specified for property '{path[0]}' of resource '{resource}'."
    return "One or more properties contains invalid values."
