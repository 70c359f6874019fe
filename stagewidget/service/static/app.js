// stagewidget dashboard: the login, then the run list or a run's page. Plain ES2020
// modules, no framework, no build. Everything a run carries is shown with textContent
// (runs carry any string a stage wrote); the DOM is updated at most once a frame, from
// the latest status of each run.
import { ApiError, BASE, onUnauthorized, problemDetail, request, session } from "./api.js";
import { $, setConn, showPageProblem } from "./dom.js";
import { list } from "./list.js";
import { runPage } from "./run.js";
import { start } from "./start.js";

function route() {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "";
  const match = /^runs\/([^/]+)$/.exec(path);
  if (match) return { page: "run", runId: decodeURIComponent(match[1]) };
  return { page: "list" };
}

function showApp() {
  $("#login-view").hidden = true;
  const where = route();
  if (where.page === "run") runPage.start(where.runId);
  else {
    list.start();
    start.load();
  }
}

let loggedIn = false;
function loggedOut() {
  if (!loggedIn && !$("#login-view").hidden) return;
  loggedIn = false;
  session.csrfToken = null;
  list.stop();
  runPage.stop();
  start.pipelines.clear();
  $("#start").hidden = true;
  $("#logout").hidden = true;
  showPageProblem("");
  setConn("offline");
  if (!session.login) {  // nothing to log in to here: the host's own login it is
    showPageProblem("the server no longer accepts this page's session: reload the page "
                    + "(and log in again if asked)");
    return;
  }
  $("#login-view").hidden = false;
  $("#token").focus();
}

function loggedInWith(body) {
  loggedIn = true;
  session.csrfToken = body.csrf_token || null;
  if (typeof body.csrf_header === "string" && body.csrf_header) session.csrfHeader = body.csrf_header;
  session.login = body.login !== false;
  $("#logout").hidden = !session.csrfToken || !session.login;
  showApp();
}

$("#login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("#token"), problem = $("#login-problem");
  const button = $('#login button[type="submit"]');
  problem.hidden = true;
  button.disabled = true;
  try {
    const reply = await request("api/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: input.value }) });
    if (!reply.ok) {
      problem.textContent = await problemDetail(reply);
      problem.hidden = false;
      input.select();
      return;
    }
    const body = await reply.json();
    input.value = "";
    loggedInWith({ ...body, csrf_header: session.csrfHeader, login: true });
  } catch (err) {
    problem.textContent = `the login failed: ${err.message}`;
    problem.hidden = false;
  } finally {
    button.disabled = false;
  }
});

$("#logout").addEventListener("click", async () => {
  try {
    await request("api/logout", { method: "POST" });
  } finally {
    loggedOut();
  }
});

window.addEventListener("online", () => {
  for (const stream of [list.stream, runPage.stream]) {
    if (!stream || stream.closed) continue;
    if (stream.connected) setConn("live");  // it held through the outage
    else stream.connect();
  }
});
window.addEventListener("offline", () => setConn("offline"));

async function boot() {
  let body;
  try {
    const reply = await fetch(`${BASE}api/session`, { credentials: "same-origin",
                                                      headers: { Accept: "application/json" } });
    if (!reply.ok) throw new ApiError(reply.status, await problemDetail(reply));
    body = await reply.json();
  } catch (err) {
    showPageProblem(`cannot reach the service: ${err.message}`);
    setConn("offline");
    return;
  }
  if (typeof body.csrf_header === "string" && body.csrf_header) session.csrfHeader = body.csrf_header;
  session.login = body.login !== false;
  if (body.token_required && !body.session && session.login) {
    loggedIn = true;  // so loggedOut() runs its reset
    loggedOut();
    return;
  }
  loggedInWith(body);
}

onUnauthorized(loggedOut);
boot();
