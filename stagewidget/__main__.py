"""Command line: ``python -m stagewidget demo`` and ``python -m stagewidget serve``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from .demo import SCALE_VARIABLE, build_pipeline
from .demo.lab import NOTEBOOK, run_lab
from .demo.pipeline import DEMO_EPOCHS, DEMO_ROWS
from .errors import ConfigError, PipelineError


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0 (got {text!r})")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 (got {text!r})")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: the ``demo`` and ``serve`` commands and their options."""
    from .service.list_events import MAX_STREAMS
    from .service.server import DRAIN_S

    parser = argparse.ArgumentParser(prog="python -m stagewidget")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run the demo pipeline with the text view, or open the demo notebook "
        "in JupyterLab (--lab)",
        description="Run the demo pipeline (synthetic data, features, a logistic "
        "regression trained in pure Python, a model file) with the text view: about 10 s. "
        f"${SCALE_VARIABLE} (a number > 0, default 1) scales the work of every demo and "
        "shipped notebook. With --lab, start JupyterLab on 127.0.0.1 with the "
        "model-training notebook open instead.")
    demo.add_argument("--out", default=None, metavar="DIR",
                      help="directory for the model file (default: a new temporary one)")
    demo.add_argument("--rows", type=_positive_int, default=None,
                      help=f"how many synthetic rows to generate, 80%% for training, 20%% "
                      f"for testing (default: {DEMO_ROWS})")
    demo.add_argument("--epochs", type=_positive_int, default=None,
                      help=f"passes over the training rows (default: {DEMO_EPOCHS} times "
                      f"${SCALE_VARIABLE}, at least 1: about 10 s at scale 1)")
    demo.add_argument("--lab", action="store_true",
                      help="instead, start JupyterLab from this environment on 127.0.0.1 "
                      f"with {NOTEBOOK} open, print its URL with a fresh token, and run "
                      "until Ctrl-C (which stops JupyterLab and its kernels)")
    demo.add_argument("--port", type=int, default=None,
                      help="with --lab: JupyterLab's port on 127.0.0.1 (default: a free one)")
    demo.add_argument("--open", action="store_true",
                      help="with --lab: also open the URL in the default web browser "
                      "(default: only print it)")
    demo.add_argument("--notebooks", type=Path, default=None, metavar="DIR",
                      help="with --lab: the folder JupyterLab serves, which must hold "
                      f"{NOTEBOOK} (default: the repository's notebooks/)")
    serve = commands.add_parser("serve", help="serve pipelines over HTTP (the status service)")
    serve.add_argument("pipelines", help="module:attribute holding a Pipeline, a list or a "
                       "dict of them, e.g. myproject.pipelines:PIPELINES")
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (default: 127.0.0.1, reachable from "
                       "this machine only)")
    serve.add_argument("--port", type=int, default=8750,
                       help="TCP port to listen on (default: 8750)")
    stores = serve.add_mutually_exclusive_group()
    stores.add_argument("--store", default=None,
                        help="where runs are recorded: memory (default: this process only), "
                        "redis://host:port/db (shared by processes on any host) or "
                        "sqlite:///path/to/runs.db (a file shared by this host's processes; "
                        "runs survive a restart)")
    stores.add_argument("--redis", default=None, metavar="URL",
                        help="redis://host:port/db: the same as --store with that URL "
                        "(default: none)")
    _add_security_flags(serve)
    serve.add_argument("--keep-s", type=float, default=600.0,
                       help="how long finished runs stay readable, in seconds (default: 600)")
    serve.add_argument("--max-finished", type=int, default=1000,
                       help="most finished runs kept; the oldest are forgotten first "
                       "(default: 1000)")
    serve.add_argument("--lost-after-s", type=float, default=10.0,
                       help="seconds without a heartbeat after which another process's "
                       "running run reads lost (default: 10)")
    serve.add_argument("--max-running", type=int, default=32,
                       help="most runs running at once in this process; later ones wait "
                       "in pending, first in first out (default: 32)")
    serve.add_argument("--executor", default=None,
                       help="thread (default) or process")
    serve.add_argument("--cors-origin", action="append", default=[],
                       help="allow this origin by CORS (repeatable; default: CORS off)")
    serve.add_argument("--allowed-host", action="append", default=[],
                       help="bound to loopback, also serve requests whose Host is this "
                       "name (a reverse proxy's public name; repeatable; default: "
                       "127.0.0.1, localhost and [::1] only)")
    serve.add_argument("--max-streams", type=int, default=MAX_STREAMS,
                       help="most event streams open at once; one more is answered 429 "
                       f"(default: {MAX_STREAMS})")
    serve.add_argument("--drain-s", type=_seconds, default=DRAIN_S,
                       help="on SIGTERM or Ctrl-C, how long running runs may go on before "
                       "they are cancelled, in seconds (a second signal cancels them at once; "
                       f"default: {DRAIN_S:g})")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        return _demo(parser, args)
    return 0


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.lab:
        terminal_only = [flag for flag, value in (("--out", args.out), ("--rows", args.rows),
                                                  ("--epochs", args.epochs))
                         if value is not None]
        if terminal_only:
            parser.error(f"{', '.join(terminal_only)}: for the terminal demo, not --lab")
        return run_lab(notebooks=args.notebooks, port=args.port, open_browser=args.open)
    lab_only = [flag for flag, value in (("--port", args.port), ("--open", args.open),
                                         ("--notebooks", args.notebooks))
                if value not in (None, False)]
    if lab_only:
        parser.error(f"{', '.join(lab_only)}: only with --lab")
    try:
        pipe = build_pipeline(rows=args.rows or DEMO_ROWS, epochs=args.epochs)
    except ConfigError as exc:
        print(f"stagewidget demo: {exc}", file=sys.stderr)
        return 2
    path = pipe.run(args.out)
    print(f"model written to {path}")
    return 0


def _add_security_flags(serve: argparse.ArgumentParser) -> None:
    """The serve flags for the token, request heads (limits, parser), tracebacks and the
    access log."""
    tokens = serve.add_mutually_exclusive_group()
    tokens.add_argument("--token", default=os.environ.get("STAGEWIDGET_TOKEN") or None,
                        help="bearer token clients must send (default: $STAGEWIDGET_TOKEN, "
                        "else a random one, printed at start)")
    tokens.add_argument("--no-token", action="store_true",
                        help="require no token: anyone who can reach the port may start, "
                        "read and cancel runs (refused beyond loopback)")
    serve.add_argument("--max-head-bytes", type=int, default=64 * 1024,
                       help="largest request head (request line and headers); larger is "
                       "answered 431 (default: 65536)")
    serve.add_argument("--head-timeout-s", type=float, default=10.0,
                       help="close a connection that has not sent a complete request head "
                       "this long after it opened, with 408 (default: 10)")
    serve.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto",
                       help="HTTP parser (default auto: httptools when installed, as it is "
                       "faster, else h11; both keep the head limits)")
    serve.add_argument("--expose-tracebacks", action="store_true",
                       help="show failed runs' tracebacks to HTTP clients (default: type, "
                       "message and stage only; tracebacks stay in this terminal's log)")
    serve.add_argument("--expose-logs", action="store_true",
                       help="show runs' logs (what their stages printed, warned and logged) "
                       "to HTTP clients (default: an empty logs list)")
    serve.add_argument("--no-access-log", action="store_true",
                       help="do not log a line per request (default: one line per request, "
                       "without the token)")


def load_object(spec: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted), from the current dir too."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"expected module:attribute, e.g. myproject.pipelines:PIPELINES "
                         f"(got {spec!r})")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise SystemExit(f"{module_name!r} has no attribute {attribute!r}") from None
    return value


def _serve(args: argparse.Namespace) -> int:
    from .service.server import Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        service = Service(load_object(args.pipelines), host=args.host, port=args.port,
                          store=args.store, redis=args.redis, keep_s=args.keep_s,
                          max_finished=args.max_finished, lost_after_s=args.lost_after_s,
                          max_running=args.max_running,
                          executor=args.executor, cors_origins=tuple(args.cors_origin),
                          allowed_hosts=tuple(args.allowed_host),
                          max_streams=args.max_streams,
                          token="" if args.no_token else args.token,
                          max_head_bytes=args.max_head_bytes,
                          head_timeout_s=args.head_timeout_s, http=args.http,
                          expose_tracebacks=args.expose_tracebacks,
                          expose_logs=args.expose_logs,
                          access_log=not args.no_access_log)
    except (ConfigError, PipelineError) as exc:
        print(f"stagewidget serve: {exc}", file=sys.stderr)
        return 2
    names = ", ".join(sorted(service.registry.pipelines))
    print(f"serving {names} on {service.url} ({service.registry.store.name} store, "
          f"{service.http} parser)", file=sys.stderr, flush=True)
    print(_token_banner(service.token, given=args.token is not None), file=sys.stderr,
          flush=True)
    print(_page_banner(service.url, service.token, given=args.token is not None),
          file=sys.stderr, flush=True)
    try:
        service.serve_forever(drain_s=args.drain_s)
    except RuntimeError as exc:  # it could not listen
        print(f"stagewidget serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _token_banner(token: str, *, given: bool) -> str:
    """The banner's token lines: the token on a line of its own, never inside a URL (which
    would put it in browser history and access logs)."""
    if not token:
        return ("no token (--no-token): anyone who can reach this port can start, read and "
                "cancel runs")
    if given:
        return "clients send the token you gave: Authorization: Bearer <token>"
    return ("clients send this token as 'Authorization: Bearer <token>':\n"
            f"{token}")


def _page_banner(url: str, token: str, *, given: bool) -> str:
    """The banner's line pointing a browser at the dashboard (the token is never in it)."""
    for wildcard in ("//0.0.0.0:", "//[::]:"):  # listening everywhere: loopback works
        url = url.replace(wildcard, "//127.0.0.1:")
    if not token:
        return f"open {url}/"
    return f"open {url}/ and log in with the token {'you gave' if given else 'above'}"


if __name__ == "__main__":
    sys.exit(main())
