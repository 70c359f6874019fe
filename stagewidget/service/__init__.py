"""The status service: start runs over HTTP, read or stream their status, share it via Redis.

Needs the ``service`` extra (``pip install 'stagewidget[service]'``); nothing here is
imported by ``import stagewidget``.
"""

from .registry import RunRegistry
from .server import Service, serve
from .store import MemoryStore, Record, StoreUnavailable

__all__ = ["MemoryStore", "Record", "RunRegistry", "Service", "StoreUnavailable", "serve"]
