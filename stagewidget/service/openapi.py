"""The OpenAPI 3.1 document of the HTTP API, written out so it says exactly what is sent."""

from __future__ import annotations

from typing import Any

__all__ = ["MAX_LIMIT", "MAX_OFFSET", "openapi_document"]

MAX_LIMIT = 500  # runs per page
MAX_OFFSET = 10**9  # more runs than any store keeps; bounds the digits a query may send

_NUM = {"type": ["number", "null"]}
_STR = {"type": ["string", "null"]}
_UNIT = {"type": ["string", "null"],
         "description": "what done/total count (\"epoch\", \"B\"); null when unsaid "
                        "(a tqdm bar's default \"it\" included)"}
# ints past 4,300 digits come as strings in scientific notation ("1.000000e+5000")
_COUNT = {"type": ["integer", "string"]}
_COUNT_OR_NULL = {"type": ["integer", "string", "null"]}
_STATES = ["pending", "running", "succeeded", "failed", "cancelled", "lost"]
_STAGE_STATES = ["pending", "running", "succeeded", "failed", "cancelled", "skipped"]
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object", "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                       "status": {"type": "integer"}, "detail": {"type": "string"},
                       "instance": {"type": "string"}},
    },
    "Error": {
        "type": ["object", "null"],
        "required": ["type", "message", "traceback", "stage"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"},
                       "traceback": {"type": "string",
                                     "description": "empty unless the operator exposes "
                                                    "tracebacks (--expose-tracebacks)"},
                       "stage": _STR},
    },
    "Level": {
        "type": "object", "required": ["desc", "done", "total", "fraction"],
        "properties": {"desc": _STR, "done": _COUNT, "total": _COUNT_OR_NULL,
                       "fraction": _NUM, "unit": _UNIT},
    },
    "StageStatus": {
        "type": "object",
        "required": ["name", "state", "done", "total", "fraction", "eta_s", "metrics"],
        "properties": {
            "name": {"type": "string"}, "state": {"enum": _STAGE_STATES},
            "done": {**_COUNT, "minimum": 0}, "total": _COUNT_OR_NULL,
            "fraction": _NUM, "desc": _STR, "started_at": _NUM, "finished_at": _NUM,
            "elapsed_s": {"type": "number"}, "rate": _NUM, "eta_s": _NUM,
            "metrics": {"type": "object",
                        "additionalProperties": {"type": ["number", "string", "boolean",
                                                          "null"]}},
            "history": {"type": "object",
                        "additionalProperties": {"type": "array", "items": _NUM}},
            "message": _STR,
            "inner": {"type": "array", "items": {"$ref": "#/components/schemas/Level"}},
            "unit": _UNIT,
        },
    },
    "RunStatus": {
        "type": "object",
        "required": ["run_id", "pipeline", "state", "stages", "fraction", "result", "error"],
        "properties": {
            "run_id": {"type": "string", "format": "uuid"},
            "pipeline": {"type": "string"}, "state": {"enum": _STATES},
            "current": {"type": ["integer", "null"]}, "current_stage": _STR,
            "fraction": _NUM, "created_at": {"type": "number"}, "started_at": _NUM,
            "finished_at": _NUM, "updated_at": {"type": "number"},
            "elapsed_s": {"type": "number"}, "eta_s": _NUM,
            "result": {"description": "the last stage's output once succeeded (any JSON)"},
            "result_is_repr": {"type": "boolean"},
            "result_unavailable": {**_STR, "description": "why the result is null although "
                                   "the run succeeded: even its repr() failed"},
            "queue_position": {
                "type": "integer", "minimum": 1,
                "description": "while pending: the run's place in the queue of its service "
                               "process (1: next to start), refreshed about once a second; "
                               "absent once it started"},
            "error": {"$ref": "#/components/schemas/Error"}, "retry_of": _STR,
            "logs": {"type": "array", "items": {"type": "string"},
                     "description": "the run's latest log lines (its stages' output, warnings "
                                    "and logging records); empty unless the operator "
                                    "exposes logs (--expose-logs)"},
            "stages": {"type": "array", "items": {"$ref": "#/components/schemas/StageStatus"}},
        },
    },
    "RunSummary": {
        "type": "object", "required": ["run_id", "pipeline", "state", "url"],
        "properties": {
            "run_id": {"type": "string", "format": "uuid"}, "pipeline": {"type": "string"},
            "state": {"enum": _STATES}, "current_stage": _STR, "fraction": _NUM,
            "created_at": {"type": "number"}, "started_at": _NUM, "finished_at": _NUM,
            "elapsed_s": {"type": "number"}, "eta_s": _NUM,
            "error": {"$ref": "#/components/schemas/Error"}, "retry_of": _STR,
            "url": {"type": "string"},
        },
    },
    "RunsPage": {
        "type": "object", "required": ["runs", "total", "offset", "limit", "next"],
        "properties": {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/RunSummary"}},
            "total": {"type": "integer"}, "offset": {"type": "integer"},
            "limit": {"type": "integer"}, "next": _STR,
        },
    },
}


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


def _problems(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": _REASONS[code], "content": _PROBLEM} for code in codes}


_REASONS = {400: "Bad request", 401: "Missing or wrong token", 404: "Not found",
            409: "The run has already ended", 413: "Body too large",
            415: "Body not JSON", 422: "Input not accepted", 503: "Status store unavailable"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


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


def openapi_document(*, pipelines: dict[str, dict[str, Any] | None], secured: bool
                     ) -> dict[str, Any]:
    """The API document.

    Args:
        pipelines: the names served, each with its input's JSON schema (None: no input).
        secured: whether a bearer token is required.
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
            "responses": {"200": _json({"type": "object", "required": ["pipelines"]},
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
                          **_problems(*auth, 404, 503)}}},
    }
    for name, schema in sorted(pipelines.items()):
        paths[f"/api/pipelines/{name}/runs"] = _start_run(name, schema, auth)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "stagewidget status service", "version": "1"},
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http",
                                                                "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
        for path in ("/api/health",):
            document["paths"][path]["get"]["security"] = []
    return document
