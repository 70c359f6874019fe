"""Command line: ``python -m stagewidget demo`` and ``python -m stagewidget serve``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

from .demo import build_pipeline
from .errors import ConfigError, PipelineError


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0 (got {text!r})")
    return value


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; return the exit status."""
    from .service.server import DRAIN_S

    parser = argparse.ArgumentParser(prog="python -m stagewidget")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo pipeline with the text view")
    demo.add_argument("--out", default=None, help="directory for the model file")
    demo.add_argument("--rows", type=int, default=60_000)
    demo.add_argument("--epochs", type=int, default=10)
    serve = commands.add_parser("serve", help="serve pipelines over HTTP (the status service)")
    serve.add_argument("pipelines", help="module:attribute holding a Pipeline, a list or a "
                       "dict of them, e.g. myproject.pipelines:PIPELINES")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8750)
    stores = serve.add_mutually_exclusive_group()
    stores.add_argument("--store", default=None,
                        help="where runs are recorded: memory (default: this process only), "
                        "redis://host:port/db (shared by processes on any host) or "
                        "sqlite:///path/to/runs.db (a file shared by this host's processes; "
                        "runs survive a restart)")
    stores.add_argument("--redis", default=None, metavar="URL",
                        help="redis://host:port/db: the same as --store with that URL")
    _add_security_flags(serve)
    serve.add_argument("--keep-s", type=float, default=600.0,
                       help="how long finished runs stay readable")
    serve.add_argument("--max-finished", type=int, default=1000)
    serve.add_argument("--lost-after-s", type=float, default=10.0)
    serve.add_argument("--max-running", type=int, default=32,
                       help="most runs running at once in this process; later ones wait "
                       "in pending, first in first out (default 32)")
    serve.add_argument("--executor", default=None, help="thread (default) or process")
    serve.add_argument("--cors-origin", action="append", default=[],
                       help="allow this origin by CORS (repeatable; default: CORS off)")
    serve.add_argument("--drain-s", type=_seconds, default=DRAIN_S,
                       help="on SIGTERM or Ctrl-C, how long running runs may go on before "
                       "they are cancelled (a second signal cancels them at once; "
                       f"default {DRAIN_S:g})")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        pipe = build_pipeline(rows=args.rows, epochs=args.epochs)
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
                       help="do not log a line per request")


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
