"""Benchmark: the bundled hub, as an admin brings it up and as users meet it in a browser. Prints
the figures; asserts nothing.

    python bench/hub.py

Needs smoke-tested builds of base, aiidalab and pyiron in the engine (`imagebuild build aiidalab
pyiron` first, which builds base too), Debian's chromium and Playwright. Everything runs on
loopback: a fresh registry started here on a free port, a hub folder `benchhub` in a temporary
folder, one user per image signed up through the browser and approved by the admin.

1. `hub up` (wall clock around `imagebuild hub up DIR --json`): cold (the registry lacks the hub's
   images and the engine has none under its name: `hub up` builds and pushes them; the build is
   the content-hash reuse of the local `imagebuild/hub` and `imagebuild/postgres`, nothing is
   compiled), again with nothing changed while it runs, and warm (`hub down` then `hub up`).
2. From clicking start on /hub/spawn to JupyterLab loaded (a launcher card or the restored
   notebook visible) and to a first notebook cell importing the image's main package finished,
   on the first start (new user, empty home volume) and a later start (server stopped, started
   again on the same volume).
Everything it created (containers, volumes, image tags under its registry, the registry) is
removed at the end.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imagebuild.build.engine import Engine
from imagebuild.model.hub import HubFolder
from imagebuild.model.project import load_project
from imagebuild.publish import registry as registry_module
from imagebuild.reuse import latest_ref
from tests.hub_browser import HubPerson, chromium

NAME, ADMIN, PASSWORD = "benchhub", "boss", "a long benchmark password"
CELLS = {"base": "import jupyterlab", "aiidalab": "import aiida; from aiida import orm", "pyiron": "import pyiron_atomistics"}
STEP_TIMEOUT = 600_000  # ms


def cli(*args: str) -> str:
    done = subprocess.run(["imagebuild", *args], cwd=REPO, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        hint = "\n(build and smoke-test the images first: imagebuild build aiidalab pyiron)" if args[0] == "push" else ""
        raise SystemExit(f"imagebuild {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}{hint}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hub_up(folder: Path) -> dict:
    began = time.monotonic()
    result = json.loads(cli("hub", "up", str(folder), "--json"))
    print(f"hub up: {time.monotonic() - began:.1f} s, {result['images']}, {result['services']}", file=sys.stderr)
    return {**result, "wall": time.monotonic() - began}


def browser_journeys(url: str, labels: dict[str, str]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per image, (lab loaded, cell done) seconds on the first and a later start, for a user of its own."""
    timings: dict[str, dict[str, tuple[float, float]]] = {}
    with chromium() as browser:

        def person(user: str) -> HubPerson:
            return HubPerson(browser, url, user, password=PASSWORD, timeout_ms=STEP_TIMEOUT)

        people = {image: person(f"user{image}") for image in labels}
        for image, visitor in people.items():
            visitor.signup(f"user{image}")  # waits for the admin's approval
        admin = person(ADMIN)
        admin.signup(ADMIN)  # the admin named by `hub init --admin` is approved as they sign up
        admin.login(ADMIN)
        for image in people:
            admin.approve(f"user{image}")
        for image, visitor in people.items():
            try:
                visitor.login(f"user{image}")
                starts = []
                for _ in ("first", "later"):
                    began = time.monotonic()
                    lab = visitor.start(labels[image])
                    visitor.run_cell(f"{CELLS[image]}; print('cell done')", "cell done")
                    starts.append((lab, time.monotonic() - began))
                    visitor.stop()
                timings[image] = {"first": starts[0], "later": starts[1]}
                print(f"{image}: first start {starts[0]}, later start {starts[1]}", file=sys.stderr)
            except Exception:
                shot = REPO / "build" / f"bench-hub-{image}.png"
                shot.parent.mkdir(exist_ok=True)
                visitor.page.screenshot(path=str(shot))
                print(f"{image}: failed at {visitor.page.url}; screenshot {shot}", file=sys.stderr)
                raise
    return timings


def clean_up(engine: Engine, folder: Path, host: str) -> None:
    if (folder / "hub.toml").is_file():
        subprocess.run(["imagebuild", "hub", "down", str(folder)], cwd=REPO, capture_output=True, check=False)
    for container in engine.client.containers.list(all=True, filters={"label": f"io.imagebuild.hub={NAME}"}):
        container.remove(force=True)
    for volume in engine.client.volumes.list():
        if volume.name.startswith(f"{NAME}-"):
            volume.remove(force=True)
    for kind in ("tags", "digests"):  # our registry's names; the image itself stays under its other tags
        for image in engine.client.images.list():
            tags = [ref for ref in image.tags if ref.startswith(f"{host}/")]
            digests = [ref for ref in image.attrs.get("RepoDigests") or [] if ref.startswith(f"{host}/")]
            if len(image.tags) > len(tags):
                for ref in tags if kind == "tags" else digests:
                    try:
                        engine.client.images.remove(ref, noprune=True)
                    except docker.errors.APIError as error:
                        print(f"could not untag {ref}: {error}", file=sys.stderr)


def main() -> None:
    project, engine = load_project(REPO), Engine()
    missing = [name for name in CELLS if engine.image(latest_ref(project, name)) is None]
    if missing:
        raise SystemExit(f"no build of {', '.join(missing)}: run 'imagebuild build aiidalab pyiron' first")
    workdir = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    folder, host = workdir / NAME, f"127.0.0.1:{free_port()}"
    clean_up(engine, folder, host)  # volumes of an interrupted earlier run
    pid = registry_module.up(host, lambda line: print(line, file=sys.stderr), storage=workdir / "registry")
    try:
        cli("hub", "init", str(folder), "--admin", ADMIN, "--registry", host, "--port", str(free_port()))
        settings = HubFolder(folder).settings
        present = [ref for ref in (settings.hub_image, settings.database_image) if engine.image(ref) is not None]
        if present:
            raise SystemExit(f"not a cold start: the engine has {', '.join(present)}")
        pushed = json.loads(cli("push", *CELLS, "--registry", host, "--json"))  # fails at once without smoke-tested builds
        tags = {result["name"]: result["tags"][0]["tag"] for result in pushed}
        known = {image.id for image in engine.client.images.list()}
        ups = {"cold": hub_up(folder)}
        reused = {ref: engine.image(ref).id in known for ref in (settings.hub_image, settings.database_image)}
        ups["no change, running"] = hub_up(folder)
        cli("hub", "down", str(folder))
        ups["warm (after hub down)"] = hub_up(folder)
        cli("hub", "select", *(f"{name}:{tag}" for name, tag in tags.items()), "--dir", str(folder))
        timings = browser_journeys(settings.public_url, {name: f"{name} {tag}" for name, tag in tags.items()})
    finally:
        try:
            clean_up(engine, folder, host)
        finally:
            if pid:
                os.kill(pid, signal.SIGTERM)
            shutil.rmtree(workdir, ignore_errors=True)

    def short(mapping: dict[str, str]) -> str:
        return ", ".join(f"{key.rsplit('/', 1)[-1].split(':')[0]} {value}" for key, value in mapping.items())

    print(f"## hub up ({ups['cold']['compose']})\n")
    print("| | " + " | ".join(ups) + " |")
    print("| --- |" + " ---: |" * len(ups))
    print("| wall clock of `imagebuild hub up --json` (s) | " + " | ".join(f"{u['wall']:.1f}" for u in ups.values()) + " |")
    print("| hub up's own figure (s) | " + " | ".join(f"{u['seconds']:.1f}" for u in ups.values()) + " |")
    print("| images | " + " | ".join(short(u["images"]) for u in ups.values()) + " |")
    print("| services | " + " | ".join(short(u["services"]) for u in ups.values()) + " |")
    how = {ref.rsplit("/", 1)[-1]: "the engine's build of the current recipe, reused by content hash" if again
           else "built now: the engine had no build of the current recipe" for ref, again in reused.items()}
    print(f"\n(cold: 'built' means tagged for and pushed to the fresh registry; {'; '.join(f'{k}: {v}' for k, v in how.items())})\n")
    print("## spawn in the browser: click on start -> JupyterLab loaded / first cell done (s)\n")
    print("| image | cell | first start: lab loaded | first start: cell done | later start: lab loaded | later start: cell done |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, timing in timings.items():
        (lab1, cell1), (lab2, cell2) = timing["first"], timing["later"]
        print(f"| {name} {tags[name]} | `{CELLS[name]}` | {lab1:.1f} | {cell1:.1f} | {lab2:.1f} | {cell2:.1f} |")
    print(f"\n({len(os.sched_getaffinity(0))} CPUs, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, one run)")


if __name__ == "__main__":
    main()
