"""The origin design's status service, for comparison: Flask's dev server, a dict of tasks.

A thread per task walks the stages and updates the task's dict; ``GET /status/<id>`` returns
it; a cleanup thread drops finished tasks. Its known bugs are fixed (registered before its
thread starts, one lock, a cleanup that cannot crash, the result returned, no debug mode),
so what is measured is the pattern itself. Run: ``python -m bench.flask_origin PORT``.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid

from flask import Flask, jsonify, request

app = Flask(__name__)
tasks: dict[str, dict] = {}
lock = threading.Lock()
KEEP_S = 600.0


def run_task(task_id: str, data: dict) -> None:
    steps, step_s = int(data.get("steps", 0)), float(data.get("step_s", 0.0))
    with lock:
        tasks[task_id].update(state="running", stage="work", total=steps)
    for i in range(steps):
        time.sleep(step_s)
        with lock:
            tasks[task_id].update(done=i + 1, updated_at=time.time())
    with lock:
        tasks[task_id].update(state="succeeded", result=steps, finished_at=time.time(),
                              updated_at=time.time())


@app.post("/start")
def start():
    task_id = str(uuid.uuid4())
    with lock:
        tasks[task_id] = {"task_id": task_id, "state": "pending", "done": 0,
                          "updated_at": time.time()}
    threading.Thread(target=run_task, args=(task_id, request.get_json()), daemon=True).start()
    return jsonify({"task_id": task_id}), 202


@app.get("/status/<task_id>")
def status(task_id: str):
    with lock:
        task = dict(tasks[task_id]) if task_id in tasks else None
    if task is None:
        return jsonify({"error": "unknown task"}), 404
    return jsonify(task)


def cleanup() -> None:
    while True:
        time.sleep(30)
        now = time.time()
        with lock:
            for task_id in [k for k, t in tasks.items()
                            if t.get("finished_at") and now - t["finished_at"] > KEEP_S]:
                del tasks[task_id]


if __name__ == "__main__":
    threading.Thread(target=cleanup, daemon=True).start()
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True, debug=False)
