// The page's requests: every URL from the base the page was served under, the session
// cookie, and for changes the CSRF token; a 401 hands over to the login.

export const BASE = document.querySelector('meta[name="stagewidget-base"]').content;

// login: whether the back end has a token login (the Jupyter extension has none:
// Jupyter authenticated the user before the page loaded)
export const session = { csrfToken: null, csrfHeader: "X-CSRF-Token", login: true };

let unauthorized = () => {};

/** Call ``handler`` when a request is answered 401 (the session ended). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export async function problemDetail(reply) {
  try {
    const body = await reply.json();
    if (body && typeof body.detail === "string") return body.detail;
  } catch (_) { /* not JSON */ }
  return `the service answered ${reply.status} ${reply.statusText}`.trim();
}

/** fetch(BASE + path) with the session cookie and, for changes, the CSRF token. */
export async function request(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const method = (options.method || "GET").toUpperCase();
  if (!["GET", "HEAD"].includes(method) && session.csrfToken) {
    headers.set(session.csrfHeader, session.csrfToken);
  }
  if (!headers.has("Accept")) headers.set("Accept", "application/json");
  const reply = await fetch(BASE + path, { ...options, method, headers,
                                           credentials: "same-origin" });
  if (reply.status === 401 && path !== "api/login") {
    unauthorized();
  }
  return reply;
}

export async function requestJson(path, options) {
  const reply = await request(path, options);
  if (!reply.ok) throw new ApiError(reply.status, await problemDetail(reply));
  return reply.status === 204 ? null : reply.json();
}

export async function act(action, runId, button, problemNode) {
  button.disabled = true;
  problemNode.hidden = true;
  try {
    const path = action === "cancel" ? `api/runs/${encodeURIComponent(runId)}`
      : `api/runs/${encodeURIComponent(runId)}/retry`;
    const status = await requestJson(path, { method: action === "cancel" ? "DELETE" : "POST" });
    return status;
  } catch (err) {
    problemNode.textContent = err instanceof ApiError ? err.message
      : `the request failed: ${err.message}`;
    problemNode.hidden = false;
    return null;
  } finally {
    button.disabled = false;
  }
}

export function runUrl(runId) {
  return `${BASE}runs/${encodeURIComponent(runId)}`;
}
