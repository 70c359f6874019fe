"""The dashboard page's template (``render_index``, shared with the Jupyter extension) and
the API document's entries for the page's endpoints (sessions, list events, retry)."""

from __future__ import annotations

import re

import harness
import httpx
import jsonschema
import pytest

from stagewidget.__main__ import _page_banner
from stagewidget.service.openapi import openapi_document
from stagewidget.service.pages import PAGE_HEADERS, STATIC_DIR, render_index

make_service, prefix = harness.make_service, harness.prefix
WAIT_S = 20.0


# -- render_index ------------------------------------------------------------------------

def test_the_page_builds_every_url_from_its_base() -> None:
    page = render_index("/user/alice/stagewidget/").decode()
    assert "__BASE__" not in page
    assert '<meta name="stagewidget-base" content="/user/alice/stagewidget/">' in page
    assert 'src="/user/alice/stagewidget/static/app.js"' in page
    assert 'href="/user/alice/stagewidget/static/app.css"' in page
    assert 'action="/user/alice/stagewidget/api/login"' in page
    # nothing in the page points outside its base (no bare /api, /static, no other host)
    urls = re.findall(r'(?:src|href|action|content)="(/[^"]*)"', page)
    assert urls and all(url.startswith("/user/alice/stagewidget/") for url in urls), urls
    assert "http://" not in page and "https://" not in page and "<style" not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script (the CSP)


def test_the_base_is_escaped_as_an_attribute_value() -> None:
    page = render_index('/a"><script>alert(1)</script>&/').decode()
    assert "<script>alert(1)" not in page and '/a"' not in page
    assert '/a&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;/' in page


@pytest.mark.parametrize("base, why", [
    ("user/alice/", "must start and end with '/'"),
    ("/user/alice", "must start and end with '/'"),
    ("", "must start and end with '/'"),
    ("//evil.example/", "must not start with '//'"),
    ("/a\n/", "no control character"),
])
def test_a_base_that_is_no_absolute_folder_path_is_refused(base: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)) as caught:
        render_index(base)
    assert repr(base) in str(caught.value)


def test_the_rendered_page_is_cached_per_base() -> None:
    assert render_index("/") is render_index("/")
    assert render_index("/x/") != render_index("/")


def test_the_page_files_ship_with_the_package() -> None:
    for name in ("index.html", "app.js", "app.css", "favicon.svg"):
        assert (STATIC_DIR / name).is_file(), name
    scripts = list(STATIC_DIR.glob("*.js"))
    assert len(scripts) > 1  # app.js and the modules it imports
    for path in scripts:
        script = path.read_text()
        assert "innerHTML" not in script and "outerHTML" not in script, path.name
        assert "insertAdjacentHTML" not in script and "document.write" not in script
        assert '"/api' not in script and "'/api" not in script  # every URL from the base
        for module in re.findall(r'from "([^"]+)"', script):  # relative: any base works
            assert module.startswith("./") and (STATIC_DIR / module[2:]).is_file(), module
    assert "frame-ancestors 'none'" in PAGE_HEADERS["Content-Security-Policy"]


def test_the_service_serves_the_page_rendered_for_its_root(make_service) -> None:
    service = make_service("memory")
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as browser:
        for path in ("/", "/runs/x", "/static/index.html"):
            reply = browser.get(path)
            assert reply.status_code == 200
            assert reply.content == render_index("/"), path
            assert reply.headers["content-security-policy"] == \
                PAGE_HEADERS["Content-Security-Policy"]
        script = browser.get("/static/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith(("text/javascript",
                                                          "application/javascript"))
        assert script.headers["x-content-type-options"] == "nosniff"


# -- the banner --------------------------------------------------------------------------

def test_the_banner_says_where_to_open_the_page_and_never_holds_the_token() -> None:
    assert _page_banner("http://127.0.0.1:8750", "t0ken", given=False) == \
        "open http://127.0.0.1:8750/ and log in with the token above"
    assert _page_banner("http://0.0.0.0:9000", "t0ken", given=True) == \
        "open http://127.0.0.1:9000/ and log in with the token you gave"
    assert _page_banner("http://127.0.0.1:8750", "", given=False) == \
        "open http://127.0.0.1:8750/"


# -- the API document --------------------------------------------------------------------

def test_the_document_has_the_page_endpoints_and_both_security_schemes() -> None:
    document = openapi_document(pipelines={}, secured=True, cookie="stagewidget_session_81")
    paths = document["paths"]
    for path, method in [("/api/login", "post"), ("/api/logout", "post"),
                         ("/api/session", "get"), ("/api/events", "get"),
                         ("/api/runs/{run_id}/retry", "post"), ("/api/pipelines", "get")]:
        assert method in paths[path], path
    assert paths["/api/login"]["post"]["security"] == []  # it is how one gets in
    assert paths["/api/session"]["get"]["security"] == []
    assert "security" not in paths["/api/logout"]["post"]
    assert {"401", "429"} <= set(paths["/api/login"]["post"]["responses"])
    assert document["security"] == [{"bearer": []}, {"session": []}]
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"},
        "session": {**document["components"]["securitySchemes"]["session"],
                    "type": "apiKey", "in": "cookie", "name": "stagewidget_session_81"}}
    open_document = openapi_document(pipelines={}, secured=False, cookie="c")
    assert "securitySchemes" not in open_document["components"]
    assert "security" not in open_document


def test_the_session_and_pipelines_replies_fit_their_documented_schemas(make_service
                                                                       ) -> None:
    service = make_service("memory")
    with httpx.Client(base_url=service.url, timeout=WAIT_S) as browser:
        document = browser.get("/openapi.json", headers=harness.auth(service)).json()

        def check(path: str, method: str, code: str, body: object) -> None:
            schema = document["paths"][path][method]["responses"][code]["content"][
                "application/json"]["schema"]
            jsonschema.validate(body, {**schema, "components": document["components"]})

        check("/api/session", "get", "200", browser.get("/api/session").json())
        login = browser.post("/api/login", json={"token": service.token})
        check("/api/login", "post", "200", login.json())
        check("/api/session", "get", "200", session := browser.get("/api/session").json())
        assert session["csrf_header"] == "X-CSRF-Token" and session["login"] is True
        pipelines = browser.get("/api/pipelines").json()
        check("/api/pipelines", "get", "200", pipelines)
        schemas = {p["name"]: p["input_schema"] for p in pipelines["pipelines"]}
        assert schemas["hello"] is None and schemas["square"] == {"type": "object"}
