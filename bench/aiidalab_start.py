"""Benchmark: what an AiiDAlab user waits for in aiidalab-qe, in Chromium, on a first start (empty
home volume) and a later start (same volume, new container, as a hub spawns it): from `docker run`
to the AiiDAlab start page rendered (the App Store link shown) and to the QE app's first step
shown; the cost of installing the QE app's twelve pseudopotential families at first start; the
image's size. Prints a Markdown table (median over --rounds); asserts nothing.

    python bench/aiidalab_start.py [--rounds N] [--family ARCHIVE CUTOFFS]

The image is the project's latest smoke-tested aiidalab-qe (`imagebuild build aiidalab-qe`).
--family: an archive of UPF files and its cutoffs table (install-pseudo-family's arguments),
installed in the first start's container under the twelve labels the QE app asks for, timed.
"""

import argparse
import io
import secrets
import shutil
import statistics
import sys
import tarfile
import time
from pathlib import Path

import requests
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from imagebuild.build.engine import Engine
from imagebuild.model.project import load_project
from imagebuild.reuse import latest_ref
from tests.conftest import free_port
from tests.integration.test_aiidalab_qe import APP_FAMILIES

START_PAGE = "text=App Store"
QE_FIRST_STEP = "text=Step 1: Select structure"
LIMIT_MS = 600_000


def start(engine: Engine, image: str, volume: str) -> tuple[object, str]:
    port = free_port()
    container = engine.client.containers.run(
        image, ["start-notebook.py", "--IdentityProvider.token="], detach=True, ports={"8888/tcp": ("127.0.0.1", port)},
        volumes={volume: {"bind": "/home/jovyan", "mode": "rw"}}, labels={"io.imagebuild.bench": "aiidalab-start"},
    )  # fmt: skip
    return container, f"http://127.0.0.1:{port}"


def wait_for_server(url: str) -> None:
    deadline = time.monotonic() + LIMIT_MS / 1000
    while True:
        try:
            if requests.get(f"{url}/api", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.1)


def one_start(engine: Engine, browser, image: str, volume: str, family: tuple[Path, Path] | None) -> dict[str, float]:
    began = time.monotonic()
    container, url = start(engine, image, volume)
    try:
        wait_for_server(url)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url)  # the server's default page: the start page
        page.wait_for_selector(START_PAGE, timeout=LIMIT_MS)
        timings = {"start page": time.monotonic() - began}
        page.goto(f"{url}/apps/apps/quantum-espresso/qe.ipynb")
        page.wait_for_selector(QE_FIRST_STEP, timeout=LIMIT_MS)
        timings["QE app first step"] = time.monotonic() - began
        page.close()
        if family is not None:
            for path, name in zip(family, ("family.tar.gz", "cutoffs.json"), strict=True):
                with open(path, "rb") as data:
                    container.put_archive("/tmp", _tar(name, data.read()))
            installing = time.monotonic()
            code, output = container.exec_run(
                ["install-pseudo-family", "/tmp/family.tar.gz", "/tmp/cutoffs.json", *APP_FAMILIES], user="jovyan"
            )
            if code != 0:
                raise RuntimeError(output.decode(errors="replace"))
            timings["12 families installed"] = time.monotonic() - installing
        return timings
    finally:
        container.remove(force=True)


def _tar(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o644
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--family", nargs=2, type=Path, metavar=("ARCHIVE", "CUTOFFS"))
    options = parser.parse_args()
    engine = Engine()
    image = latest_ref(load_project(REPO), "aiidalab-qe")
    size = engine.client.images.get(image).attrs["Size"] / 1e9
    rows: dict[str, list[float]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        for _ in range(options.rounds):
            volume = engine.client.volumes.create(f"imagebuild-bench-home-{secrets.token_hex(4)}")
            try:
                first = one_start(engine, browser, image, volume.name, tuple(options.family) if options.family else None)
                later = one_start(engine, browser, image, volume.name, None)
            finally:
                volume.remove(force=True)
            for key, value in first.items():
                rows.setdefault(f"first start: {key}", []).append(value)
            for key, value in later.items():
                rows.setdefault(f"later start: {key}", []).append(value)
        browser.close()
    print(f"aiidalab-qe ({image}), {size:.2f} GB (upstream aiidalab/qe: 3.9 to 5.8 GB); median of {options.rounds}\n")
    print("| what | seconds |\n| --- | --- |")
    for key, values in rows.items():
        print(f"| {key} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
