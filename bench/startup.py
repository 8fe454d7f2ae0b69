"""Benchmark: final sizes of the bundled images and the time from `docker run` to a ready server,
on the first start (empty home volume) and a later start (same volume, new container, as a hub
spawns it), measured the same way for each image. Prints the figures; asserts nothing.

    python bench/startup.py [IMAGE...] [--rounds N]

Each image is the project's latest smoke-tested build (`imagebuild build NAME` first). "Ready"
means the server in the container (start.sh with its before-notebook.d hooks, then
`jupyter server`, what jupyterhub-singleuser extends) answers GET /api through a published port.
For aiidalab it also reports when the AiiDA daemon is up (it starts once RabbitMQ has booted,
after the server is ready): the log line `verdi daemon start` writes.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imagebuild.engine import Engine  # noqa: E402
from imagebuild.pipeline import latest_ref  # noqa: E402
from imagebuild.plan import load_project  # noqa: E402

DAEMON_LOG = "/home/jovyan/.aiida-services/daemon-start.log"
LIMIT = 300


def start(engine: Engine, ref: str, volume: str, earlier_starts: int) -> tuple[float, float | None]:
    """Seconds until the server answers, and (aiidalab) until the daemon reports it started (the
    daemon log gains its line for this start: it holds one per earlier start on this volume)."""
    token = secrets.token_hex(16)
    command = ["start.sh", "jupyter", "server", "--ServerApp.ip=0.0.0.0", "--ServerApp.port=8888", f"--IdentityProvider.token={token}"]
    began = time.monotonic()
    container = engine.client.containers.run(
        ref, command, detach=True, ports={"8888/tcp": ("127.0.0.1", None)}, volumes={volume: {"bind": "/home/jovyan", "mode": "rw"}}
    )
    try:
        container.reload()
        port = container.ports["8888/tcp"][0]["HostPort"]
        ready = None
        while ready is None:
            try:
                if requests.get(f"http://127.0.0.1:{port}/api", timeout=2).ok:
                    ready = time.monotonic() - began
            except requests.RequestException:
                pass
            if time.monotonic() - began > LIMIT:
                raise SystemExit(f"{ref} did not answer within {LIMIT} s:\n{container.logs().decode()[-2000:]}")
            time.sleep(0.1)
        daemon = None
        if "aiidalab" in ref:
            while daemon is None and time.monotonic() - began < LIMIT:
                done = container.exec_run(["bash", "-c", f"grep -c 'OK' {DAEMON_LOG} || true"]).output.strip()
                if done and int(done) > earlier_starts:
                    daemon = time.monotonic() - began
                time.sleep(0.2)
        return ready, daemon
    finally:
        container.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", default=["base", "aiidalab", "pyiron"])
    parser.add_argument("--rounds", type=int, default=1, help="first/later start pairs per image")
    args = parser.parse_args()
    project, engine = load_project(REPO), Engine()
    rows = []
    for name in args.images:
        ref = latest_ref(project, name)
        image = engine.image(ref)
        if image is None:
            raise SystemExit(f"no {ref}: run 'imagebuild build {name}' first")
        first, later = [], []
        for _ in range(args.rounds):
            volume = engine.client.volumes.create(name=f"bench-startup-{secrets.token_hex(4)}")
            try:
                first.append(start(engine, ref, volume.name, 0))
                later.append(start(engine, ref, volume.name, 1))
            finally:
                volume.remove(force=True)
        rows.append((name, image.attrs["Size"], first, later))

    def median(samples: list[tuple[float, float | None]], index: int) -> str:
        values = [sample[index] for sample in samples if sample[index] is not None]
        return f"{statistics.median(values):.1f}" if values else "-"

    print("| image | size (GB, uncompressed) | first start: server ready (s) | later start: server ready (s) | first start: AiiDA daemon up (s) | later start: AiiDA daemon up (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, size, first, later in rows:
        print(f"| {name} | {size / 1e9:.2f} | {median(first, 0)} | {median(later, 0)} | {median(first, 1)} | {median(later, 1)} |")
    print(f"\n(median of {args.rounds} round(s); engine on this machine, {len(os.sched_getaffinity(0))} CPUs)")


if __name__ == "__main__":
    main()
