"""Checking client events against the ``openai.types.realtime`` models, strictly.

Used by the loopback Realtime server (:mod:`callstate.testing.realtime_server`): a field
the models do not define is an error too, as the API answers ``unknown_parameter``.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

import pydantic
from openai.types.realtime import RealtimeClientEvent

__all__ = ["validate_client_event"]

_CLIENT_UNION: Any = Annotated[
    get_args(RealtimeClientEvent)[0], pydantic.Field(discriminator="type")
]

_CLIENT_EVENT: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(_CLIENT_UNION)


def _unknown_param(value: Any, path: str) -> str | None:
    """The first field the models do not define, anywhere inside ``value``."""
    if isinstance(value, pydantic.BaseModel):
        extra = next(iter(value.model_extra or {}), None)
        if extra is not None:
            return f"{path}.{extra}".lstrip(".")
        for name in type(value).model_fields:
            found = _unknown_param(getattr(value, name), f"{path}.{name}")
            if found:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _unknown_param(v, f"{path}[{i}]")
            if found:
                return found
    return None


def validate_client_event(data: Any) -> str | None:
    """Check one decoded client event against the ``openai.types.realtime`` models.

    Returns:
        ``None`` when valid, else the problem, naming the parameter.
    """
    try:
        model = _CLIENT_EVENT.validate_python(data)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or "type"
        return f"Invalid '{param}': {err['msg']}."
    unknown = _unknown_param(model, "")
    return f"Unknown parameter: '{unknown}'." if unknown else None
