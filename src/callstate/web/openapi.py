"""The OpenAPI 3.1 document of the web endpoints (served at ``/v1/openapi.json``)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_TOKEN = {"type": "string", "maxLength": 2048, "description": "a resume token (cs1.…)"}
_ERROR_FIELDS = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {
            "type": "string",
            "description": "stable: token_invalid, token_superseded, call_ended, "
            "session_active, session_expired, session_not_found, bad_request, …",
        },
        "message": {"type": "string"},
    },
}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": _ERROR_FIELDS}}
_SESSION = {
    "type": "object",
    "required": ["session_id", "epoch", "agent", "token", "resumed"],
    "properties": {
        "session_id": {"type": "string"},
        "epoch": {"type": "integer", "minimum": 1},
        "agent": {"type": "string"},
        "token": _TOKEN,
        "expires_in": {"type": "number", "description": "seconds the token stays valid"},
        "resumed": {"type": "boolean"},
        "gap_s": {"type": ["number", "null"], "description": "seconds since the drop"},
    },
}
_PREFLIGHT = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {
            "enum": [
                "resumable",
                "expired",
                "unknown",
                "invalid",
                "ended",
                "superseded",
                "active",
            ]
        },
        "session_id": {"type": ["string", "null"]},
        "agent": {"type": ["string", "null"]},
        "epoch": {"type": ["integer", "null"]},
        "expires_at": {"type": ["number", "null"], "description": "unix seconds"},
        "reason": {"type": "string"},
    },
}

#: a refused resume: the error, and what preflight would have answered for the token
#: (absent only when it is no refusal, e.g. `stale_epoch`: another owner won the claim)
_REFUSAL = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": _ERROR_FIELDS, "preflight": _PREFLIGHT},
}


def _body(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _answers(
    ok: int, schema: dict[str, Any], *errors: int, refusal: dict[str, Any] = _ERROR
) -> dict[str, Any]:
    out: dict[str, Any] = {
        str(ok): {"description": "ok", "content": {"application/json": {"schema": schema}}}
    }
    for status in (400, 413, 415, *errors):
        shape = refusal if status in errors else _ERROR
        out[str(status)] = {
            "description": "error",
            "content": {"application/json": {"schema": shape}},
        }
    return out


def _post(summary: str, body: dict[str, Any], answers: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"summary": summary, "requestBody": body, "responses": answers}}


def openapi_document(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The endpoints, their bodies, answers and error shape.

    ``extra`` adds ``"paths"`` and ``"securitySchemes"`` (the dashboard's, when it is on).
    """
    token = {"token": _TOKEN}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "callstate web", "version": "1"},
        "paths": {
            "/v1/preflight": _post(
                "Can this token resume now? Never takes ownership.",
                _body(token, ["token"]),
                _answers(200, _PREFLIGHT),
            ),
            "/v1/start": _post(
                "Start a new session; answers its first token.",
                _body({"caller": {"type": "string"}, "agent": {"type": "string"}}, []),
                _answers(201, _SESSION, 404),
            ),
            "/v1/resume": _post(
                "Resume the session at epoch+1; answers a fresh token. Takes the session "
                "only where preflight would answer resumable (or active, with takeover); "
                "a refusal carries that preflight answer.",
                _body({**token, "takeover": {"type": "boolean"}}, ["token"]),
                _answers(200, _SESSION, 401, 404, 409, 410, refusal=_REFUSAL),
            ),
            "/v1/token/refresh": _post(
                "A fresh token for the same session and epoch.",
                _body(token, ["token"]),
                _answers(200, _SESSION, 401, 404, 409, 410),
            ),
        },
    }
    if extra:
        doc["paths"] = {**doc["paths"], **extra.get("paths", {})}
        if "securitySchemes" in extra:
            doc["components"] = {"securitySchemes": extra["securitySchemes"]}
    return doc
