"""``callstate serve``: run the web endpoints standalone with uvicorn.

The store is ``--db`` (every command's option: a store URL or a SQLite path); the signing secret comes from
``$CALLSTATE_SECRET`` (several, comma-separated, for rotation: the first signs), which
every worker sharing the store must also have.
"""

from __future__ import annotations

import argparse
import os

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
    opts = WebOptions(allow_start=not args.no_start, cors_origins=tuple(args.cors))
    app = create_app(keeper, opts)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    out.print(f"callstate web on http://{args.host}:{args.port} (store {_store(args.db)})")
    await uvicorn.Server(config).serve()
    return 0
