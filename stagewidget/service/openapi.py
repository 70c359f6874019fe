"""The OpenAPI 3.1 document of the HTTP API, written out so it says exactly what is sent."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .. import status
from ..status import ErrorInfo, Level, RunState, RunStatus, StageState, StageStatus
from .registry import LOST

__all__ = ["MAX_LIMIT", "MAX_OFFSET", "SUMMARY_KEYS", "openapi_document", "schemas"]

MAX_LIMIT = 500  # runs per page
MAX_OFFSET = 10**9  # more runs than any store keeps; bounds the digits a query may send

# The fields of a run in a listing (GET /api/runs), besides its "url".
SUMMARY_KEYS = ("run_id", "pipeline", "state", "current_stage", "fraction", "created_at",
                "started_at", "finished_at", "elapsed_s", "eta_s", "error", "retry_of")

_NUM = {"type": ["number", "null"]}
_STR = {"type": ["string", "null"]}
_UNIT = {"type": ["string", "null"],
         "description": "what done/total count (\"epoch\", \"B\"); null when unsaid "
                        "(a tqdm bar's default \"it\" included)"}
# ints past 4,300 digits come as strings in scientific notation ("1.000000e+5000")
_COUNT = {"type": ["integer", "string"]}
_COUNT_OR_NULL = {"type": ["integer", "string", "null"]}
# The service reports "lost" for a run whose process stopped writing.
_STATES = list(dict.fromkeys([*(state.value for state in RunState), LOST]))
_STAGE_STATES = [state.value for state in StageState]
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# -- schemas derived from the status types --------------------------------------------
# Each status type's schema lists exactly the keys its to_dict() gives; a key's JSON type
# comes from the field's (or property's) type hint, so a new field or state shows up
# here without an edit. Only what a type hint cannot say is written out below.

_BY_TYPE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"}, str | None: _STR,
    float: {"type": "number"}, float | None: _NUM,
    int: _COUNT, int | None: _COUNT_OR_NULL, bool: {"type": "boolean"},
    RunState: {"enum": _STATES}, StageState: {"enum": _STAGE_STATES},
    ErrorInfo | None: _ref("Error"),
    tuple[StageStatus, ...]: {"type": "array", "items": _ref("StageStatus")},
    tuple[Level, ...]: {"type": "array", "items": _ref("Level")},
    tuple[str, ...]: {"type": "array", "items": {"type": "string"}},
    Mapping[str, float | int | str | bool]: {
        "type": "object",
        "additionalProperties": {"type": ["number", "string", "boolean", "null"]}},
    Mapping[str, tuple[float, ...]]: {
        "type": "object", "additionalProperties": {"type": "array", "items": _NUM}},
}

# What a type hint cannot say: keys to_dict() computes, and constraints and notes.
_MORE: dict[str, dict[str, Any]] = {
    "Level.unit": _UNIT,
    "StageStatus.done": {"minimum": 0},
    "StageStatus.unit": _UNIT,
    "RunStatus.run_id": {"format": "uuid"},
    "RunStatus.current": {"type": ["integer", "null"]},
    "RunStatus.current_stage": _STR,
    "RunStatus.result": {"description": "the last stage's output once succeeded (any JSON)"},
    "RunStatus.result_is_repr": {"type": "boolean"},
    "RunStatus.result_unavailable": {
        **_STR, "description": "why the result is null although the run succeeded: even "
                               "its repr() failed"},
    "RunStatus.logs": {"description": "the run's latest log lines (its stages' output, "
                                      "warnings and logging records); empty unless the "
                                      "operator exposes logs (--expose-logs)"},
    "ErrorInfo.traceback": {"description": "empty unless the operator exposes tracebacks "
                                           "(--expose-tracebacks)"},
}

_REQUIRED = {
    Level: ["desc", "done", "total", "fraction"],
    ErrorInfo: ["type", "message", "traceback", "stage"],
    StageStatus: ["name", "state", "done", "total", "fraction", "eta_s", "metrics"],
    RunStatus: ["run_id", "pipeline", "state", "stages", "fraction", "result", "error"],
}

_SAMPLES: dict[type, Any] = {
    Level: Level(desc=None, done=0), ErrorInfo: ErrorInfo(type="", message="", traceback=""),
    StageStatus: StageStatus(name="x"), RunStatus: RunStatus(run_id="x", pipeline="x"),
}


def _hint(kind: type, key: str) -> Any:
    """The type hint of ``kind``'s field or property ``key``, or None."""
    if key in {f.name for f in fields(kind)}:
        # the status module's names: public classes show __module__ "stagewidget"
        return typing.get_type_hints(kind, globalns=vars(status))[key]
    prop = getattr(kind, key, None)
    if isinstance(prop, property) and prop.fget is not None:
        return typing.get_type_hints(prop.fget).get("return")
    return None


def _properties(kind: type) -> dict[str, Any]:
    """The JSON schema of each key of ``kind``'s ``to_dict()``, in its order."""
    properties = {}
    for key in _SAMPLES[kind].to_dict():
        more = _MORE.get(f"{kind.__name__}.{key}", {})
        derived = _BY_TYPE.get(_hint(kind, key))
        if derived is None and "type" not in more and "description" not in more:
            raise TypeError(f"no JSON schema for {kind.__name__}.{key} "
                            f"(type {_hint(kind, key)!r}): add it to openapi._BY_TYPE")
        properties[key] = {**(derived or {}), **more}
    return properties


def _object(kind: type, **more: Any) -> dict[str, Any]:
    required = _REQUIRED[kind]
    properties = _properties(kind)
    missing = [key for key in required if key not in properties]
    if missing:
        raise TypeError(f"{kind.__name__}.to_dict() lacks required keys {missing}")
    return {"type": "object", "required": required, "properties": properties, **more}


def schemas() -> dict[str, Any]:
    """The API's component schemas, derived from the status types in ``status.py``."""
    run = _object(RunStatus)
    run["properties"]["queue_position"] = {  # added by the service, not by to_dict()
        "type": "integer", "minimum": 1,
        "description": "while pending: the run's place in the queue of its service "
                       "process (1: next to start), refreshed about once a second; "
                       "absent once it started"}
    summary = {key: run["properties"][key] for key in SUMMARY_KEYS}
    return {
        "Problem": {
            "type": "object", "description": "RFC 9457 problem details",
            "required": ["type", "title", "status", "detail"],
            "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                           "status": {"type": "integer"}, "detail": {"type": "string"},
                           "instance": {"type": "string"}},
        },
        "Error": {**_object(ErrorInfo), "type": ["object", "null"]},
        "Level": _object(Level),
        "StageStatus": _object(StageStatus),
        "RunStatus": run,
        "RunSummary": {
            "type": "object", "required": ["run_id", "pipeline", "state", "url"],
            "properties": {**summary, "url": {"type": "string"}},
        },
        "RunsPage": {
            "type": "object", "required": ["runs", "total", "offset", "limit", "next"],
            "properties": {
                "runs": {"type": "array", "items": _ref("RunSummary")},
                "total": {"type": "integer"}, "offset": {"type": "integer"},
                "limit": {"type": "integer"}, "next": _STR,
            },
        },
    }


_SCHEMAS = schemas()


_EVENT = {
    "type": "object", "required": ["event", "data"],
    "oneOf": [
        {"properties": {"event": {"const": "status"},
                        "data": {"type": "string", "contentMediaType": "application/json",
                                 "contentSchema": {"$ref": "#/components/schemas/RunStatus"}}}},
        {"properties": {"event": {"const": "end"},
                        "data": {"type": "string", "contentMediaType": "application/json",
                                 "contentSchema": {"type": "object", "required": ["state"],
                                                   "properties": {"state": {"enum": _STATES}}}}}},
    ],
}


_PIPELINE = {
    "type": "object", "required": ["name", "stages", "runs_url", "input_schema"],
    "properties": {
        "name": {"type": "string"},
        "stages": {"type": "array", "items": {"type": "string"}},
        "runs_url": {"type": "string"},
        "input_schema": {"type": ["object", "null"],
                         "description": "the JSON schema of the run's input (the body of "
                                        "its POST); null: it takes no input"}},
}


def _problems(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": _REASONS[code], "content": _PROBLEM} for code in codes}


_REASONS = {400: "Bad request", 401: "Missing or wrong token", 403: "Forbidden",
            404: "Not found", 409: "The run has already ended", 413: "Body too large",
            415: "Body not JSON", 422: "Input not accepted", 429: "Too many failed logins",
            503: "Status store unavailable"}


_TOO_MANY_STREAMS = {"description": "As many event streams are open as the service "
                                    "serves at once (max_streams)", "content": _PROBLEM,
                     "headers": {"Retry-After": {"schema": {"type": "string"}}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _start_run(name: str, schema: dict[str, Any] | None, auth: tuple[int, ...]
               ) -> dict[str, Any]:
    location = {"Location": {"schema": {"type": "string"},
                             "description": "the run's status URL"}}
    operation: dict[str, Any] = {
        "operationId": f"start-{name}",
        "summary": f"Start a run of pipeline {name!r}"
                   + (" with the JSON body as its input" if schema is not None else ""),
        "parameters": [
            {"name": "Prefer", "in": "header", "required": False,
             "schema": {"type": "string"},
             "description": "wait=N: answer when the run ends, or after N seconds"},
            {"name": "Idempotency-Key", "in": "header", "required": False,
             "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                        "pattern": "^[\\x20-\\x7e]+$"}},
        ],
        "responses": {
            "200": _json(_ref("RunStatus"), "The run ended within the wait"),
            "202": {**_json(_ref("RunStatus"), "Started"), "headers": location},
            **_problems(400, *auth, 413, 415, 422, 503)},
    }
    if schema is not None:
        operation["requestBody"] = {"required": True, "description": "the run's input",
                                    "content": {"application/json": {"schema": schema}}}
    return {"post": operation}


# A token is some 43 characters; the bound keeps any login body within the 4 KiB the
# service reads, however its characters are escaped.
_TOKEN = {"type": "string", "minLength": 1, "maxLength": 300,
          "description": "the service's token (printed when it started)"}


def _session_paths(auth: tuple[int, ...]) -> dict[str, Any]:
    """The browser session endpoints: login, logout and the session's state."""
    csrf = {"type": "object", "required": ["csrf_token", "idle_timeout_s"],
            "properties": {"csrf_token": {"type": "string"},
                           "idle_timeout_s": {"type": "number"}}}
    token_body = {"type": "object", "required": ["token"], "properties": {"token": _TOKEN}}
    forbidden = (403,) if auth else ()  # a session's request without Origin or CSRF token
    return {
        "/api/login": {"post": {
            "operationId": "login", "security": [],
            "summary": "Exchange the token for a browser session: an HttpOnly SameSite="
                       "Strict session cookie (never the token) and the CSRF token that "
                       "requests changing state send in X-CSRF-Token",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": token_body},
                "application/x-www-form-urlencoded": {"schema": token_body}}},
            "responses": {
                "200": {**_json(csrf, "Logged in (a JSON body)"),
                        "headers": {"Set-Cookie": {"schema": {"type": "string"},
                                                   "description": "the session cookie"}}},
                "303": {"description": "Logged in (a form): back to the page",
                        "headers": {"Location": {"schema": {"type": "string"}}}},
                "401": {"description": "Wrong token", "content": _PROBLEM},
                "409": {"description": "The service needs no token: nothing to log in to",
                        "content": _PROBLEM},
                **_problems(400, 403, 413, 415, 429)}}},
        "/api/logout": {"post": {
            "operationId": "logout", "summary": "End the browser session, clear its cookie",
            "responses": {"204": {"description": "Logged out"},
                          **_problems(*auth, *forbidden)}}},
        "/api/session": {"get": {
            "operationId": "getSession", "security": [],
            "summary": "Whether the request's cookie names a live session; its CSRF token "
                       "and the header to send it in",
            "responses": {"200": _json({
                "type": "object",
                "required": ["token_required", "session", "login", "csrf_header"],
                "properties": {
                    "token_required": {"type": "boolean"}, "session": {"type": "boolean"},
                    "login": {"type": "boolean",
                              "description": "whether POST /api/login exists (a token)"},
                    "csrf_header": {"type": "string"},
                    "csrf_token": {"type": "string"},
                    "idle_timeout_s": {"type": "number"}}}, "The session's state")}}},
    }


def openapi_document(*, pipelines: dict[str, dict[str, Any] | None], secured: bool,
                     cookie: str | None = None) -> dict[str, Any]:
    """The API document.

    Args:
        pipelines: the names served, each with its input's JSON schema (None: no input).
        secured: whether a bearer token is required.
        cookie: the session cookie's name (it holds the port), for its security scheme.
    """
    run_id = {"name": "run_id", "in": "path", "required": True,
              "schema": {"type": "string", "format": "uuid"}}
    auth = (401,) if secured else ()
    paths: dict[str, Any] = {
        "/api/health": {"get": {
            "operationId": "health", "summary": "Is the service and its store up?",
            "responses": {"200": _json({"type": "object", "required": ["status"]}, "Up"),
                          **_problems(503)}}},
        "/api/pipelines": {"get": {
            "operationId": "listPipelines", "summary": "The pipelines that can be started",
            "responses": {"200": _json({"type": "object", "required": ["pipelines"],
                                        "properties": {"pipelines": {
                                            "type": "array", "items": _PIPELINE}}},
                                       "Pipelines"), **_problems(*auth)}}},
        "/api/runs": {"get": {
            "operationId": "listRuns", "summary": "Runs, newest first",
            "parameters": [
                {"name": "state", "in": "query", "schema": {"enum": _STATES}},
                {"name": "pipeline", "in": "query", "schema": {"type": "string"}},
                {"name": "idempotency_key", "in": "query",
                 "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                            "pattern": "^[\\x20-\\x7e]+$"},
                 "description": "the run this Idempotency-Key started, or none; keys are "
                                "per pipeline: without pipeline, every pipeline served by "
                                "this process is searched (one run each at most)"},
                {"name": "offset", "in": "query",
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
            ],
            "responses": {"200": _json(_ref("RunsPage"), "A page of runs"),
                          **_problems(400, *auth, 503)}}},
        "/api/runs/{run_id}": {
            "get": {"operationId": "getRun", "summary": "A run's status",
                    "parameters": [run_id],
                    "responses": {"200": _json(_ref("RunStatus"), "The status"),
                                  **_problems(*auth, 404, 503)}},
            "delete": {"operationId": "cancelRun", "summary": "Cancel a run",
                       "parameters": [run_id],
                       "responses": {"202": _json(_ref("RunStatus"), "Cancel requested"),
                                     **_problems(*auth, 404, 409, 503)}}},
        "/api/runs/{run_id}/events": {"get": {
            "operationId": "streamRun",
            "summary": "Server-Sent Events: 'status' with the status JSON, 'end' at the end",
            "parameters": [run_id],
            "responses": {"200": {"description": "An event stream",
                                  "content": {"text/event-stream": {"itemSchema": _EVENT}}},
                          **_problems(*auth, 404), "429": _TOO_MANY_STREAMS,
                          **_problems(503)}}},
    }
    paths["/api/runs/{run_id}/retry"] = {"post": {
        "operationId": "retryRun",
        "summary": "Start run.retry() of a failed or cancelled run, from its failed stage "
                   "with the input it had; only the process that ran it can",
        "parameters": [run_id],
        "responses": {
            "202": {**_json(_ref("RunStatus"), "The new run, started"),
                    "headers": {"Location": {"schema": {"type": "string"},
                                             "description": "the new run's status URL"}}},
            **_problems(*auth, 404),
            "409": {"description": "Not failed or cancelled, already retried, or owned by "
                                   "another process (the detail names it)",
                    "content": _PROBLEM},
            **_problems(422, 503)}}}
    paths["/api/events"] = {"get": {
        "operationId": "streamRuns",
        "summary": "Server-Sent Events of every matching run: a 'status' event for each "
                   "run there is (newest first), then one for each change of any "
                   "matching run, new runs included, and once more when a run stops "
                   "matching",
        "parameters": [param for param in paths["/api/runs"]["get"]["parameters"]
                       if param["name"] in ("state", "pipeline")],
        "responses": {"200": {"description": "An event stream",
                              "content": {"text/event-stream": {"itemSchema": {
                                  **_EVENT, "oneOf": _EVENT["oneOf"][:1]}}}},
                      **_problems(400, *auth), "429": _TOO_MANY_STREAMS,
                      **_problems(503)}}}
    paths.update(_session_paths(auth))
    for name, schema in sorted(pipelines.items()):
        paths[f"/api/pipelines/{name}/runs"] = _start_run(name, schema, auth)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "stagewidget status service", "version": "1"},
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
    if secured:
        schemes: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
        if cookie is not None:
            schemes["session"] = {
                "type": "apiKey", "in": "cookie", "name": cookie,
                "description": "a browser session from POST /api/login; a request it "
                               "authenticates that changes state also needs the service's "
                               "own Origin and the session's X-CSRF-Token header"}
            document["security"].append({"session": []})
        document["components"]["securitySchemes"] = schemes
        for path in ("/api/health",):
            document["paths"][path]["get"]["security"] = []
    return document
