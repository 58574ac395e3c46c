"""The ``callstate`` command line: commands, the demo, and timeline rendering.

``main`` (the parser, the ``@command`` registry, ``main()``), ``timeline`` (rendering
journals and states for people: pure), ``archive`` (``callstate archive ...``),
``demo`` and ``continuity_demo`` (``callstate demo``).
"""

from .main import (
    COMMAND_MODULES,
    COMMANDS,
    Command,
    build_parser,
    command,
    db_parent,
    main,
    make_console,
    open_db,
    print_session,
    store_url,
)

__all__ = [
    "COMMANDS",
    "COMMAND_MODULES",
    "Command",
    "build_parser",
    "command",
    "db_parent",
    "main",
    "make_console",
    "open_db",
    "print_session",
    "store_url",
]
