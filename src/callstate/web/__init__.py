"""The web edge: an ASGI app (Starlette) with the continuity endpoints a browser needs.

``create_app(keeper)`` serves versioned JSON endpoints: preflight (never takes
ownership), start, resume and token refresh, with errors as JSON carrying each error's
stable ``code``. Mount it into an existing Starlette or FastAPI app in one line
(``app.mount("/callstate", create_app(keeper))``) or run it alone with
``callstate serve --db URL``. Needs ``pip install callstate[web]``; the names load on
first use, so the command line works without the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import WebOptions, create_app

__all__ = ["WebOptions", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    msg = f"module 'callstate.web' has no attribute {name!r}"
    raise AttributeError(msg)
