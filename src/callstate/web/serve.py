"""``callstate serve``: run the web endpoints standalone with uvicorn.

The store is ``--db`` (every command's option: a store URL or a SQLite path); the signing secret comes from
``$CALLSTATE_SECRET`` (several, comma-separated, for rotation: the first signs), which
every worker sharing the store must also have. ``--dashboard`` serves the operator
dashboard too, behind ``$CALLSTATE_DASHBOARD_TOKEN`` (or a new token, printed once in
the dashboard's address).
"""

from __future__ import annotations

import argparse
import os
import secrets

from rich.console import Console

from ..cli.main import command
from ..errors import ConfigError
from ..keeper import Keeper

__all__ = ["serve"]


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on")
    p.add_argument(
        "--cors", action="append", default=[], metavar="ORIGIN", help="allow this origin"
    )
    p.add_argument("--no-start", action="store_true", help="do not serve /v1/start")
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the operator dashboard at /dashboard/ (token: $CALLSTATE_DASHBOARD_TOKEN, "
        "else a new one, printed in its address)",
    )


def _store(db: str) -> str:
    return db if "://" in db else f"sqlite:///{db}"


@command(
    "serve", "serve the web endpoints (preflight, start, resume, refresh)", configure=_configure
)
async def serve(args: argparse.Namespace, out: Console) -> int:
    """Run the app until interrupted."""
    import uvicorn  # the web extra; imported here so other commands never need it

    from .app import WebOptions, create_app

    secret = os.environ.get("CALLSTATE_SECRET")
    if not secret:
        msg = "callstate serve signs resume tokens: set CALLSTATE_SECRET (16+ bytes)"
        raise ConfigError(msg)
    keeper = Keeper(_store(args.db), secret=secret)
    given = os.environ.get("CALLSTATE_DASHBOARD_TOKEN")
    token = (given or secrets.token_urlsafe(24)) if args.dashboard else None
    opts = WebOptions(
        allow_start=not args.no_start,
        cors_origins=tuple(args.cors),
        dashboard=args.dashboard,
        dashboard_token=token,
    )
    app = create_app(keeper, opts)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    base = f"http://{args.host}:{args.port}"
    out.print(f"callstate web on {base} (store {_store(args.db)})", soft_wrap=True)
    if args.dashboard:  # a new token is shown once, in the fragment: it never reaches a log
        where = "#token=" + token if not given and token else " (token: $CALLSTATE_DASHBOARD_TOKEN)"
        out.print(f"dashboard on {base}/dashboard/{where}", soft_wrap=True, markup=False)
    await uvicorn.Server(config).serve()
    return 0
