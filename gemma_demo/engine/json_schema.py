"""Checking a JSON Schema a person typed, apart from the grammar engine that enforces it.

The page checks a schema before anything runs; importing the grammar engine for that
would pull torch into the page's start.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from gemma_demo.errors import InvalidInputError


def check_schema(schema: Any) -> dict[str, Any]:
    """The schema if it is a JSON Schema object; otherwise a message that says what is wrong."""
    if not isinstance(schema, dict):
        raise InvalidInputError("The JSON answer schema must be a JSON object, e.g. {\"type\": \"object\", …}.")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as error:
        raise InvalidInputError(f"The JSON answer schema is not valid: {error.message}") from None
    return schema
