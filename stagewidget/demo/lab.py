"""``python -m stagewidget demo --lab``: JupyterLab from this environment, on 127.0.0.1, with
the model-training notebook open.

JupyterLab runs as a child process in a session of its own, so a Ctrl-C in the terminal
reaches only this process, which asks JupyterLab to stop (SIGTERM: it shuts its kernels
down, then exits) instead of JupyterLab's interactive "Shutdown this Jupyter server
(y/[n])?" prompt; SIGTERM and SIGHUP (the terminal closed) do the same. Its settings,
workspace, config and runtime files live in a temporary folder removed at the end: the
demo starts the same way every time (no news pop-up, no update check, no kernel picker)
and leaves the user's own Jupyter setup alone.
The token travels by the environment (``JUPYTER_TOKEN``), not the command line, where any
local user could read it with ``ps``.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import webbrowser
from pathlib import Path
from types import FrameType
from typing import TextIO

from ..errors import ConfigError

__all__ = ["NOTEBOOK", "LabDemo", "default_notebooks", "run_lab", "working_copy"]

NOTEBOOK = "02-model-training.ipynb"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0

# User settings that keep the first screen clear: no "receive news?" pop-up, no update
# check, and a notebook's kernel starts without a "Select Kernel" dialog.
_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                    "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True},
}


class _StopRequested(Exception):
    """SIGTERM or SIGHUP arrived (Ctrl-C arrives as ``KeyboardInterrupt``)."""


def default_notebooks() -> Path:
    """The repository's ``notebooks/`` folder, beside the package in a clone."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def working_copy(source: Path) -> Path:
    """A working copy of ``source`` (the repository's notebooks) in ``.demo-lab/`` beside
    it, to serve instead: JupyterLab marks an opened notebook changed and autosaves it,
    and the demo must not change the clone's files. Files missing from the copy are
    copied; files there already are kept, edits included (delete the folder to start
    over). ``.demo-lab/`` is git-ignored."""
    target = source.parent / ".demo-lab" / source.name
    for path in sorted(source.rglob("*")):
        if "__pycache__" in path.parts or ".ipynb_checkpoints" in path.parts:
            continue
        copy = target / path.relative_to(source)
        if path.is_dir():
            copy.mkdir(parents=True, exist_ok=True)
        elif not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
    return target


class LabDemo:
    """One JupyterLab server for the demo: ``start()`` it, then ``stop()`` it.

    Args:
        notebooks: the folder JupyterLab serves (its root); must hold ``NOTEBOOK``.
        port: the port on 127.0.0.1; None for a free one.
        log: the stream for the banner and messages (default ``sys.stdout``).
    """

    def __init__(self, *, notebooks: Path | None = None, port: int | None = None,
                 log: TextIO | None = None) -> None:
        self.notebooks = (notebooks or default_notebooks()).resolve()
        if not (self.notebooks / NOTEBOOK).is_file():
            raise ConfigError(
                f"the demo notebook {NOTEBOOK} is not in {self.notebooks}: demo --lab runs "
                "from a clone of the stagewidget repository (scripts/demo --lab), or give "
                "--notebooks DIR")
        if importlib.util.find_spec("jupyterlab") is None:
            raise ConfigError(f"JupyterLab is not installed for {sys.executable}: install "
                              "it with pip install 'stagewidget[lab]' (scripts/demo --lab "
                              "does)")
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"--port must be between 1 and 65535 (got {port})")
        self.port = port if port is not None else _free_port()
        self.token = secrets.token_hex(24)
        self.base_url = f"http://{HOST}:{self.port}"
        self.url = f"{self.base_url}/lab/tree/{NOTEBOOK}?token={self.token}"
        self._log = log or sys.stdout
        self._home: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """JupyterLab's process id, once started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where JupyterLab's own log goes, once started."""
        return self._home / "jupyterlab.log" if self._home is not None else None

    def command(self, home: Path) -> list[str]:
        """The command line that starts JupyterLab (without the token)."""
        args = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ip={HOST}",
                f"--port={self.port}", "--port-retries=0",
                f"--ServerApp.root_dir={self.notebooks}",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",  # it would ask PyPI otherwise
                f"--LabApp.user_settings_dir={home / 'settings'}",
                f"--LabApp.workspaces_dir={home / 'workspaces'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")  # JupyterLab refuses to start as root without it
        return args

    def start(self) -> str:
        """Start JupyterLab and wait until it answers; return the notebook's URL.

        Blocks up to ``READY_TIMEOUT_S``.

        Raises:
            ConfigError: the port is taken.
            RuntimeError: JupyterLab exited or did not answer in time (its log's end
                is in the message).
        """
        if self.port_taken():
            raise ConfigError(f"port {self.port} on {HOST} is in use: give another with "
                              "--port, or leave --port out for a free one")
        home = self._home = Path(tempfile.mkdtemp(prefix="stagewidget-lab-demo-"))
        _write_settings(home / "settings")
        for folder in ("workspaces", "config", "runtime"):
            (home / folder).mkdir()
        env = dict(os.environ, JUPYTER_TOKEN=self.token,
                   JUPYTER_CONFIG_DIR=str(home / "config"),
                   JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                   # this environment's python3 kernel (with stagewidget) before a user's
                   JUPYTER_PREFER_ENV_PATH="1")
        env.pop("JUPYTER_TOKEN_FILE", None)
        with (home / "jupyterlab.log").open("wb") as out:
            self._proc = subprocess.Popen(self.command(home), stdin=subprocess.DEVNULL,
                                          stdout=out, stderr=subprocess.STDOUT, env=env,
                                          cwd=self.notebooks, start_new_session=True)
        self._wait_ready()
        return self.url

    def open_browser(self) -> None:
        """Open the notebook in the default browser, through a redirecting page in the
        private temporary folder (as Jupyter does): the token stays out of the browser's
        command line, which any local user could read."""
        if self._home is None:
            raise RuntimeError("JupyterLab was not started")
        page = self._home / "open.html"
        page.write_text(f'<meta http-equiv="refresh" content="0;url={html.escape(self.url)}">')
        webbrowser.open(page.as_uri())

    def port_taken(self) -> bool:
        """Whether something already listens on the port."""
        with socket.socket() as sock:
            try:
                sock.bind((HOST, self.port))
            except OSError:
                return True
        return False

    def _wait_ready(self) -> None:
        proc = self._proc
        if proc is None:
            raise RuntimeError("JupyterLab was not started")
        deadline = time.monotonic() + READY_TIMEOUT_S
        request = urllib.request.Request(f"{self.base_url}/api/status",
                                         headers={"Authorization": f"token {self.token}"})
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=5):
                    return
            except (OSError, urllib.error.URLError):
                pass
            try:  # not answering yet: wait a little, on the process itself
                code = proc.wait(0.25)
            except subprocess.TimeoutExpired:
                continue
            raise RuntimeError(f"JupyterLab exited with {code} before it answered; the end "
                               f"of its log:\n{self._log_tail()}")
        raise RuntimeError(f"JupyterLab did not answer within {READY_TIMEOUT_S:g} s; the "
                           f"end of its log:\n{self._log_tail()}")

    def wait(self) -> int:
        """Block until JupyterLab exits by itself; return its exit code."""
        if self._proc is None:
            raise RuntimeError("JupyterLab was not started")
        return self._proc.wait()

    def stop(self) -> None:
        """Ask JupyterLab to shut down (its kernels first) and wait for it; kill it after
        ``STOP_TIMEOUT_S``. Then remove the temporary folder. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"JupyterLab did not stop within {STOP_TIMEOUT_S:g} s: killing it",
                      file=self._log, flush=True)
                proc.kill()
                proc.wait()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def _log_tail(self, chars: int = 3000) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return "(no log)"
        return path.read_text(errors="replace")[-chars:]

    def banner(self) -> str:
        """What to tell the user once JupyterLab answers."""
        return (f"\nJupyterLab is running the stagewidget demo, with {NOTEBOOK} open:\n\n"
                f"    {self.url}\n\n"
                "Open that address in a browser (it holds the access token), then "
                "Run > Run All Cells\nto watch the pipeline's live view. Ctrl-C stops "
                f"JupyterLab and its kernels.\n(JupyterLab's log: {self.log_path})\n")


def run_lab(*, notebooks: Path | None = None, port: int | None = None,
            open_browser: bool = False, log: TextIO | None = None) -> int:
    """Serve the demo notebook in JupyterLab until Ctrl-C or SIGTERM; return the exit status.

    Blocks. 0 after a requested stop (JupyterLab and its kernels have ended), 1 when
    JupyterLab failed or ended by itself with an error, 2 for a bad setting.
    """
    out = log or sys.stdout

    def _on_term(signum: int, frame: FrameType | None) -> None:
        raise _StopRequested

    stops = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    previous = {signum: signal.signal(signum, _on_term) for signum in stops}
    demo: LabDemo | None = None
    try:
        if notebooks is None and (default_notebooks() / NOTEBOOK).is_file():
            notebooks = working_copy(default_notebooks())
            print(f"serving a working copy of notebooks/ in {notebooks} (your edits stay "
                  "there; delete it to start over)", file=out, flush=True)
        demo = LabDemo(notebooks=notebooks, port=port, log=out)
        print(f"starting JupyterLab on {HOST}:{demo.port} ...", file=out, flush=True)
        demo.start()
        print(demo.banner(), file=out, flush=True)
        if open_browser:
            demo.open_browser()
        code = demo.wait()
        if code == 0:
            print("JupyterLab was shut down", file=out, flush=True)
            return 0
        print(f"JupyterLab exited with {code}; the end of its log:\n{demo._log_tail()}",
              file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, _StopRequested):
        print("stopping JupyterLab and its kernels ...", file=out, flush=True)
        return 0
    except ConfigError as exc:
        print(f"stagewidget demo --lab: {exc}", file=sys.stderr, flush=True)
        return 2
    except RuntimeError as exc:
        print(f"stagewidget demo --lab: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        # a second Ctrl-C or SIGTERM must not cut the shutdown short (which would orphan
        # the kernels); stop() kills JupyterLab itself if it hangs
        for signum in stops:
            signal.signal(signum, signal.SIG_IGN)
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if demo is not None:
                demo.stop()
        finally:
            signal.signal(signal.SIGINT, interrupt)
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _write_settings(settings: Path) -> None:
    for key, value in _SETTINGS.items():
        package, plugin = key.rsplit("/", 1)
        path = settings / package / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
