"""Type checks of the public API as a user writes it, for pyright (not run as tests).

Each ``check_*.py`` module is code a user could write, with ``typing.assert_type`` on what
pyright infers, and ``# pyright: ignore[rule]`` on each line pyright must reject. These files
turn on ``reportUnnecessaryTypeIgnoreComment``, so an expected error that disappears fails
``./scripts/check`` as surely as a new one. Lines marked "GAP" are mistakes pyright does not
catch today; they carry no ignore, so the day the public types catch them the check fails and
the line becomes an expectation. pytest only imports the modules (``test_checks_import.py``);
the functions are never called.
"""
