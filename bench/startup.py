"""Benchmark: per image, its size and the times a user waits, from `docker run` to the server
answering and to a first notebook cell that imports the image's main packages having finished,
on the first start (empty home volume) and a later start (same volume, new container, as a hub
spawns it); the same server started bare; and the main imports' cost in a new container.
Prints Markdown tables (median over --rounds); asserts nothing.

    python bench/startup.py [IMAGE...] [--rounds N]

Each image is the project's latest smoke-tested build (`imagebuild build NAME` first).
- Start: as a user does, with the image's own entrypoint and command (`tini -g -- start.sh
  start-notebook.py`, so the before-notebook.d hooks run), DOCKER_STACKS_JUPYTER_CMD=server (the
  default is lab; server is what the bare baseline runs) and the token in NOTEBOOK_ARGS; port 8888
  published on 127.0.0.1. "Server ready": GET /api answers 200.
- First cell: after the server is ready, a client run with `docker exec` in the container goes
  through the server's own API, as JupyterLab does: POST /api/kernels, then an execute_request on
  the kernel's websocket (/api/kernels/ID/channels), until its execute_reply. The time includes
  the kernel's start. aiidalab's cell retries load_profile() (bounded) until the profile exists:
  a first start creates it in the background (before-notebook.d/30-aiida-profile.sh).
- aiidalab also reports when the AiiDA daemon is up: the log line `verdi daemon start` writes.
- Bare: `jupyter server` started directly (`--entrypoint /opt/venv/bin/jupyter`), no start scripts.
- Imports: a new container (`sleep` as entrypoint, nothing imported yet) runs the main imports with
  `docker exec ... python -c` twice; with bytecode compiled at build time both cost about the same.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imagebuild.build.engine import Engine
from imagebuild.model.project import load_project
from imagebuild.reuse import latest_ref

DAEMON_LOG = "/home/jovyan/.aiida-services/daemon-start.log"
LIMIT = 300
AIIDA_CELL = """import time
from aiida import load_profile, orm
from aiida.manage.configuration import reset_config
deadline = time.monotonic() + 240
while True:
    try:
        load_profile()
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        reset_config()
        time.sleep(0.2)"""
# image: (its user's typical first cell, its main imports)
WORKLOADS = {
    "base": ("try:\n    import numpy\nexcept ImportError:\n    import json", "import ipykernel, jupyter_server, jupyterlab"),
    "aiidalab": (AIIDA_CELL, "from aiida import load_profile, orm; import aiidalab_widgets_base"),
    "pyiron": ("from pyiron_atomistics import Project", "from pyiron_atomistics import Project"),
}
# Run in the container: start a kernel through the server, execute the cell, print the reply's status.
CELL_CLIENT = """
import json, sys, urllib.request, uuid
from tornado.httpclient import HTTPRequest
from tornado.ioloop import IOLoop
from tornado.websocket import websocket_connect
token, code, limit = sys.argv[1:]
auth = {"Authorization": f"token {token}"}
post = urllib.request.Request("http://127.0.0.1:8888/api/kernels", data=b"{}", headers=auth, method="POST")
kernel = json.load(urllib.request.urlopen(post))["id"]
async def run():
    ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:8888/api/kernels/{kernel}/channels", headers=auth))
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": "", "version": "5.3", "date": ""}
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False}
    await ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"}))
    while (message := await ws.read_message()) is not None:
        message = json.loads(message)
        if message["msg_type"] == "execute_reply" and message["parent_header"].get("msg_id") == msg_id:
            return message["content"]
    raise SystemExit("the kernel's websocket closed")
reply = IOLoop.current().run_sync(run, timeout=float(limit))
print(json.dumps(reply))
sys.exit(reply["status"] != "ok")
"""


def start(engine: Engine, ref: str, volume: str, earlier_starts: int, cell: str | None) -> dict[str, float | None]:
    """Seconds until the server answers, and (with a cell) until the cell has run and (aiidalab)
    the daemon reports it started (its log gains a line for this start: one per earlier start).
    Without a cell, `jupyter server` is started bare instead of through the start scripts."""
    token = secrets.token_hex(16)
    options = {"detach": True, "ports": {"8888/tcp": ("127.0.0.1", None)}, "volumes": {volume: {"bind": "/home/jovyan", "mode": "rw"}}}
    if cell is None:
        options["entrypoint"] = ["/opt/venv/bin/jupyter"]
        options["command"] = ["server", "--ServerApp.ip=0.0.0.0", "--ServerApp.port=8888", f"--IdentityProvider.token={token}"]
    else:
        options["environment"] = {"DOCKER_STACKS_JUPYTER_CMD": "server", "NOTEBOOK_ARGS": f"--IdentityProvider.token={token}"}
    began = time.monotonic()
    container = engine.client.containers.run(ref, **options)
    try:
        container.reload()
        port = container.ports["8888/tcp"][0]["HostPort"]
        times: dict[str, float | None] = {"ready": None, "cell": None, "daemon": None}
        while times["ready"] is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api", timeout=2).status_code == 200:
                    times["ready"] = time.monotonic() - began
            except requests.RequestException:
                pass
            if time.monotonic() - began > LIMIT:
                raise SystemExit(f"{ref} did not answer within {LIMIT} s:\n{container.logs().decode()[-2000:]}")
            time.sleep(0.1)
        if cell is None:
            return times

        def run_cell() -> tuple[object, float]:
            done = container.exec_run(["python", "-c", CELL_CLIENT, token, cell, str(LIMIT)])
            return done, time.monotonic() - began

        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(run_cell)
            while "aiidalab" in ref and times["daemon"] is None and time.monotonic() - began < LIMIT:
                done = container.exec_run(["bash", "-c", f"grep -cs 'OK' {DAEMON_LOG} || true"]).output.strip()
                if done and int(done) > earlier_starts:
                    times["daemon"] = time.monotonic() - began
                time.sleep(0.2)
            done, times["cell"] = running.result()
        if done.exit_code != 0:
            raise SystemExit(f"{ref}: the first cell failed:\n{done.output.decode()[-3000:]}")
        return times
    finally:
        container.remove(force=True)


def import_times(engine: Engine, ref: str, statement: str) -> tuple[float, float]:
    """Seconds the main imports take in a new container, the first time and a second time."""
    container = engine.client.containers.run(ref, ["infinity"], entrypoint=["sleep"], detach=True)
    try:
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        times = []
        for _ in range(2):
            done = container.exec_run(["python", "-c", code], demux=True)
            if done.exit_code != 0:
                raise SystemExit(f"{ref}: {statement!r} failed:\n{(done.output[1] or b'').decode()[-2000:]}")
            times.append(float(done.output[0].split()[-1]))
        return times[0], times[1]
    finally:
        container.remove(force=True)


def median(samples: list, key: str | int) -> float | None:
    values = [sample[key] for sample in samples if sample[key] is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=["base", "aiidalab", "pyiron"])
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each kind per image")
    args = parser.parse_args()
    project, engine = load_project(REPO), Engine()
    refs = {name: latest_ref(project, name) for name in args.images}
    missing = [ref for ref in refs.values() if engine.image(ref) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: build with 'imagebuild build NAME' (it tags latest once the smoke notebooks pass)")
    results = {}
    for name, ref in refs.items():
        cell, imports = WORKLOADS.get(name, WORKLOADS["base"])
        first, later, bare_first, bare_later, imported = [], [], [], [], []
        for _ in range(args.rounds):
            for runs, bare in ((first, later), False), ((bare_first, bare_later), True):
                volume = engine.client.volumes.create(name=f"bench-startup-{secrets.token_hex(4)}")
                try:
                    runs[0].append(start(engine, ref, volume.name, 0, None if bare else cell))
                    runs[1].append(start(engine, ref, volume.name, 1, None if bare else cell))
                finally:
                    volume.remove(force=True)
            imported.append(import_times(engine, ref, imports))
        results[name] = {
            "size": engine.image(ref).size, "imports": imports,
            "first": {key: median(first, key) for key in first[0]}, "later": {key: median(later, key) for key in later[0]},
            "bare_first": median(bare_first, "ready"), "bare_later": median(bare_later, "ready"),
            "import_first": median(imported, 0), "import_second": median(imported, 1),
        }

    print("| image | size (GB, uncompressed) | first start: server ready (s) | later start: server ready (s) | first start: first cell done (s) | later start: first cell done (s) | first start: AiiDA daemon up (s) | later start: AiiDA daemon up (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        first, later = r["first"], r["later"]
        print(f"| {name} | {r['size'] / 1e9:.2f} | {fmt(first['ready'])} | {fmt(later['ready'])} | {fmt(first['cell'])} | {fmt(later['cell'])} | {fmt(first['daemon'])} | {fmt(later['daemon'])} |")

    print("\n| comparison | measured (s) | reference (s) | ratio | target |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        target = "<= 1.5" if name == "base" else ""
        print(f"| {name}: later start to server ready via start scripts / bare `jupyter server` (first start: {fmt(r['first']['ready'])} / {fmt(r['bare_first'])}) | {fmt(r['later']['ready'])} | {fmt(r['bare_later'])} | {ratio(r['later']['ready'], r['bare_later'])} | {target} |")
    if "aiidalab" in results and "base" in results:
        cell, ready = results["aiidalab"]["later"]["cell"], results["base"]["later"]["ready"]
        print(f"| aiidalab later start to first AiiDA cell done / base later start to server ready | {fmt(cell)} | {fmt(ready)} | {ratio(cell, ready)} | <= 2 |")

    print("\n| image | main imports | first import in a new container (s) | second import (s) | ratio |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | `{r['imports']}` | {fmt(r['import_first'], 2)} | {fmt(r['import_second'], 2)} | {ratio(r['import_first'], r['import_second'])} |")
    print(f"\n(median of {args.rounds} round(s); engine on this machine, {len(os.sched_getaffinity(0))} CPUs)")


if __name__ == "__main__":
    main()
