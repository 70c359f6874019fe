"""The status-service store the dashboard also reads, when one is configured.

Runs that service processes and notebooks publish (``sw.serve(store=...)``) live in a
store (Redis, or the service's SQLite file), not in the run history. With
``--StagewidgetDashboard.store=<url>`` (or ``$STAGEWIDGET_DASHBOARD_STORE``; the same
URLs as ``serve --store``) the dashboard lists them too, reports silent owners' runs
lost as the service does, and carries a Cancel the way the store does (Redis pub/sub,
the SQLite cancel table). Every call here blocks: the handlers make them off the loop.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..durable.owner import owner_alive
from ..errors import ConfigError, InvalidTransition
from ..service.store import TERMINAL, DamagedRecord, Record, Store
from ..service.stores import STORE_FORMS, make_store
from ..status import RunState

__all__ = ["LOST_AFTER_S", "SETTING", "STORE_ENV", "SharedRuns", "open_shared"]

STORE_ENV = "STAGEWIDGET_DASHBOARD_STORE"
SECTION = "StagewidgetDashboard"
SETTING = f"{SECTION}.store"
LOST = RunState.LOST.value
LOST_AFTER_S = 10.0  # the status service's default: a silent owner's run reads as lost


def configured(config: Any, environ: Mapping[str, str]) -> tuple[Any, str]:
    """The store setting and where it came from: the server's config first, then the
    environment; (None, "") when neither sets one."""
    section = config.get(SECTION) if config is not None and SECTION in config else None
    value = section.get("store") if section is not None and "store" in section else None
    if value is not None:  # from the command line: a str subclass, deferred
        return (str(value) if isinstance(value, str) else value), SETTING
    value = environ.get(STORE_ENV, "").strip()
    return (value, f"${STORE_ENV}") if value else (None, "")


def open_shared(config: Any, log: Any, environ: Mapping[str, str] | None = None
                ) -> SharedRuns | None:
    """The configured store's runs, or None (none set, or a bad setting: logged as an
    error naming the setting; the dashboard then serves the run history alone)."""
    value, where = configured(config, os.environ if environ is None else environ)
    if value is None:
        return None
    try:
        if not isinstance(value, str) or value == "memory":
            raise ConfigError(f"give a shared store URL ({STORE_FORMS.partition(', ')[2]}); "
                              "a memory store is one process's own")
        store = make_store(value)
    except (ConfigError, ImportError) as err:
        log.error("stagewidget dashboard: bad %s=%r: %s; showing the run history only",
                  where, value, err)
        return None
    return SharedRuns(store, value)


class SharedRuns:
    """One store's runs as the status service reports them (blocking calls)."""

    def __init__(self, store: Store, url: str, *, lost_after_s: float = LOST_AFTER_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.url = url
        self.lost_after_s = lost_after_s
        self._clock = clock
        self._host = socket.gethostname()

    def view(self, record: Record) -> dict[str, Any]:
        """The run's status JSON; a silent owner's run reads lost, as in the service.

        Raises ``DamagedRecord`` if the record holds no status object.
        """
        data = record.status_data()
        silent_s = self._clock() - record.heartbeat_at
        if not record.terminal and silent_s > self.lost_after_s \
                and not owner_alive(record.owner, self._host):
            data["state"] = LOST
            data.pop("queue_position", None)
            data["error"] = record.lost_error(silent_s, self.lost_after_s,
                                              data.get("current_stage"))
        return data

    def runs(self, pipeline: str | None = None) -> list[dict[str, Any]]:
        """Every readable run (of ``pipeline``); damaged records are skipped."""
        found = []
        for record in self.store.records(pipeline):
            try:
                found.append(self.view(record))
            except DamagedRecord:
                continue
        return found

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The run's status JSON, or None if the store does not hold it (or only damaged)."""
        record = self.store.get(run_id)
        try:
            return None if record is None else self.view(record)
        except DamagedRecord:
            return None

    def cancel(self, run_id: str) -> dict[str, Any] | None:
        """Ask the owning process to cancel the run (through the store); its status JSON,
        or None if the store does not hold it. Raises ``InvalidTransition`` if it ended."""
        status = self.get(run_id)
        if status is None:
            return None
        if status["state"] in TERMINAL or status["state"] == LOST:
            raise InvalidTransition(f"run {run_id} has already ended ({status['state']}); "
                                    "there is nothing to cancel")
        self.store.request_cancel(run_id)
        return status

    def watch(self, callback: Callable[[dict[str, Any]], Any]) -> Callable[[], None]:
        """Call ``callback(status)`` (from a store thread) on each write of any run."""
        def on_record(record: Record) -> None:
            try:
                callback(self.view(record))
            except DamagedRecord:
                pass
        return self.store.watch_all(on_record)

    def close(self) -> None:
        self.store.close()
