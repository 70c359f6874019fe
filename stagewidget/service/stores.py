"""The store a ``--store`` value names (``memory``, ``redis://...``, ``sqlite:///...``).

Apart from ``store`` (which the stores import) so that anything can parse a store URL
the way ``serve --store`` does: the service and the Jupyter dashboard.
"""

from __future__ import annotations

from ..errors import ConfigError
from .store import MemoryStore, Store

__all__ = ["STORE_FORMS", "make_store"]

STORE_FORMS = "memory, redis://host:port/db or sqlite:///path/to/runs.db"
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def make_store(store: str | Store | None = None, *, redis: str | None = None,
               prefix: str = "stagewidget") -> Store:
    """The store ``store`` names: ``"memory"`` (the default), a ``redis://`` URL or a
    ``sqlite:///path.db`` URL (``sqlite:////abs/path.db`` for an absolute path); a
    ``Store`` is used as it is. ``redis`` is the older way to give a Redis URL.

    Raises:
        ConfigError: ``store`` is none of these, both ``store`` and ``redis`` are given,
            or the SQLite file cannot be opened.
    """
    if redis and store is not None:
        raise ConfigError(f"give the store once: store={store!r} or redis={redis!r}, not both")
    spec = redis if redis else store if store is not None else "memory"
    if not isinstance(spec, str):
        return spec
    if spec == "memory":
        return MemoryStore()
    if spec.startswith(_REDIS_SCHEMES):
        from .redis_store import RedisStore

        return RedisStore(spec, prefix=prefix)
    if spec.startswith("sqlite:"):
        from .sqlite_store import SQLiteStore, sqlite_path

        return SQLiteStore(sqlite_path(spec))
    raise ConfigError(f"unknown store {spec[:200]!r} (use {STORE_FORMS})")
