"""``python -m callstate``: the same as the ``callstate`` command."""

from __future__ import annotations

from .cli.main import main

raise SystemExit(main())
