"""OpenAPI schema post-processing: every operation documents the error answers it can give.

The API answers input errors with 400 (``{"field": ["message"]}`` or ``{"detail": "..."}``), missing or bad
credentials with 401, a role that may not with 403, unknown ids (path or body) with 404, and a body it cannot read
with 415; ``core.api_errors`` makes every error one of these shapes.
"""

from __future__ import annotations

ERROR_COMPONENT = "ErrorResponse"
ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` (a message) or, for input errors, each field to fix with its messages.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
ERRORS = {
    "400": "Invalid input: the fields to fix, each with its messages.",
    "401": "Missing or invalid credentials (send `Authorization: Token <key>`).",
    "403": "Your role may not do this.",
    "404": "No such object (or not one you may see).",
    "415": "Unsupported media type: send JSON (or multipart where documented).",
}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _errors_for(path: str, method: str, operation: dict) -> list[str]:
    codes = []
    if method != "get" or any(p.get("in") == "query" for p in operation.get("parameters", [])):
        codes.append("400")
    if operation.get("security") != [{}] and operation.get("security") != []:
        codes += ["401", "403"]
    if "{" in path or "requestBody" in operation:  # an id in the path or the body may name nothing
        codes.append("404")
    if "requestBody" in operation:
        codes.append("415")
    return codes


def document_error_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular post-processing hook: add the error answers each operation can give (kept if present)."""
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    ref = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, item in result.get("paths", {}).items():
        for method in HTTP_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for code in _errors_for(path, method, operation):
                responses.setdefault(
                    code, {"description": ERRORS[code], "content": {"application/json": {"schema": ref}}}
                )
    return result
