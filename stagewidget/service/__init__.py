"""The status service: start runs over HTTP, read or stream their status, share it via Redis
or a SQLite file.

Needs the ``service`` extra (``pip install 'stagewidget[service]'``); nothing here is
imported by ``import stagewidget``.
"""

import logging

from .registry import RunRegistry
from .server import Service, serve
from .store import MemoryStore, Record, StoreUnavailable

__all__ = ["MemoryStore", "Record", "RunRegistry", "Service", "StoreUnavailable", "serve"]

# The service's run and access lines are for operators who configure logging (the CLI
# does); unconfigured (a notebook's sw.serve()) they stay quiet instead of reaching
# Python's last-resort handler, which would print them into whatever cell is running.
logging.getLogger("stagewidget.service").addHandler(logging.NullHandler())
