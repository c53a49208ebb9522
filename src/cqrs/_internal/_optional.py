"""The one install-hint guard for optional dependencies.

Every import of a package that comes with an extra goes through :func:`require`, wrapping the
whole import block of the module (or of the function that needs the package)::

    with require("fastapi", extra="fastapi", feature="cqrs.integrations.fastapi"):
        import fastapi
        from starlette.responses import StreamingResponse

When any import in the block fails, the user gets :class:`MissingExtraError` (an
``ImportError``) instead of a bare ``ModuleNotFoundError`` of some transitive dependency. It
names the feature and the missing module, and ends with the exact
``pip install 'cqrs-kit[extra]'`` line; when the package is installed but too old to provide
what the block imports, it says to upgrade it instead. Only third-party imports belong in the
block: a ``cqrs`` import that fails there would be reported as a missing extra.
"""

from __future__ import annotations

import importlib.util
import sys
from types import TracebackType

from cqrs._internal.errors import MissingExtraError

__all__ = ["require"]


def _missing_extra(package: str, extra: str, feature: str, cause: ImportError) -> MissingExtraError:
    """Build the error for an optional dependency that cannot be imported.

    When the missing module's top-level package is not installed, the message names
    ``feature``, ``package`` and the missing module and ends with
    ``pip install 'cqrs-kit[extra]'``. When that package is installed but the import still
    fails (a version without the module or name ``feature`` uses), installing the extra would
    not help: the message quotes the import error and says to upgrade ``package``.
    """
    missing = cause.name or package
    top = missing.partition(".")[0]
    if isinstance(cause, ModuleNotFoundError) and not _installed(top):
        module = f"'{package}'" if missing == package else f"'{package}' (module '{missing}')"
        return MissingExtraError(
            f"{feature} needs {module}, which is not installed. "
            f"Install it with: pip install 'cqrs-kit[{extra}]'"
        )
    return MissingExtraError(
        f"{feature} needs '{package}', but the installed '{top}' cannot provide it ({cause}); "
        f"it is probably too old. Upgrade it with: pip install --upgrade '{package}'"
    )


def _installed(module: str) -> bool:
    """Whether the top-level ``module`` can be imported (``None`` in ``sys.modules`` hides it)."""
    if module in sys.modules:
        return sys.modules.get(module) is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(package: str, extra: str, feature: str) -> _ImportBlock:
    """Guard the import block of an optional dependency: use as ``with require(...):``.

    ``package`` is the distribution the block needs (shown in the message), ``extra`` the
    name of the cqrs-kit extra that installs it, ``feature`` what the user tried to use (a
    module path or a class name). An ``ImportError`` raised inside the block becomes
    :class:`MissingExtraError`, chained to the original; other exceptions pass through.
    """
    return _ImportBlock(package, extra, feature)


class _ImportBlock:
    """The context manager returned by :func:`require`."""

    __slots__ = ("_extra", "_feature", "_package")

    def __init__(self, package: str, extra: str, feature: str) -> None:
        self._package = package
        self._extra = extra
        self._feature = feature

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, ImportError) and not isinstance(exc, MissingExtraError):
            raise _missing_extra(self._package, self._extra, self._feature, cause=exc) from exc
        return None
