"""Benchmark: BuildKit against the classic builder, in parallel and across two engines, and the
package caches that survive a build. Figures side by side in one run; asserts nothing.

    python bench/buildkit.py [--items fresh,parallel,cache] [--rate 2]

fresh     README's main job (`imagebuild build aiidalab --push`) on a fresh engine (empty
          data-root, empty imagebuild host cache: the root image is bootstrapped again) with
          BuildKit, then the same with --builder classic on another fresh engine
parallel  `build base aiidalab pyiron` cold (fresh engine each): --jobs 1 against --jobs 2, and
          the CI matrix on two fresh engines (base on the first, then aiidalab on the first and
          pyiron on the second at the same time, the second pulling base from the registry)
cache     a child with aiidalab's Python packages over base, through a local index throttled to
          RATE MB/s (a slow link like our users'): the rebuild after one pin was added, with the
          uv cache mount kept, and with it emptied first (as without cache mounts)

Each fresh engine is a dockerd of its own (tests/integration/engines.py); the registry is
Debian's docker-registry on a free loopback port.
"""

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from imagebuild.inputs.lockfile import pins_of
from imagebuild.publish import registry as registry_module
from imagebuild.system import cache_dir
from tests.conftest import free_port
from tests.integration.engines import side_engine


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def imagebuild(root: Path, env: dict[str, str], *args: str) -> tuple[float, list[dict]]:
    """Seconds and parsed --json output of one `imagebuild` command."""
    started = time.monotonic()
    done = subprocess.run(["imagebuild", *args, "--json"], cwd=root, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"imagebuild {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout)


@contextmanager
def fresh_machine(slot: int = 0) -> Iterator[dict[str, str]]:
    """An empty engine and an empty imagebuild host cache."""
    with side_engine(slot) as env, tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        yield {**env, "IMAGEBUILD_CACHE": cache}


@contextmanager
def registry() -> Iterator[str]:
    host = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as storage:
        pid = registry_module.up(host, progress, cache_dir(os.environ), storage=Path(storage))
        try:
            yield host
        finally:
            if pid:
                os.kill(pid, 15)


def fresh(rows: list[str]) -> None:
    with registry() as host:
        figures = {}
        for builder in ("auto", "classic"):
            with fresh_machine() as env:
                progress(f"main job on a fresh engine, --builder {builder}")
                seconds, _ = imagebuild(REPO, env, "build", "aiidalab", "--push", "--registry", host, "--builder", builder)
                figures[builder] = seconds
    rows.append(
        f"| README main job, fresh engine and cache (`build aiidalab --push`) | {figures['auto']:.0f} | {figures['classic']:.0f} "
        f"| {figures['classic'] / figures['auto']:.2f}x |"
    )


def parallel(rows: list[str]) -> None:
    images = ["base", "aiidalab", "pyiron"]
    figures = {}
    for jobs in (1, 2):
        with fresh_machine() as env:
            progress(f"build {' '.join(images)} cold, --jobs {jobs}")
            figures[jobs], _ = imagebuild(REPO, env, "build", *images, "--jobs", str(jobs))
    with registry() as host, fresh_machine(0) as first, fresh_machine(1) as second:
        progress("the matrix on two fresh engines")
        started = time.monotonic()
        _, outcomes = imagebuild(REPO, first, "build", "base", "--from-registry", "--push", "--registry", host)
        pinned = f"--parent-digest=base={outcomes[-1]['published']['digest']}"
        side = [
            subprocess.Popen(["imagebuild", "build", name, "--from-registry", "--push", "--registry", host, pinned, "--json"],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, env in (("aiidalab", first), ("pyiron", second))
        ]  # fmt: skip
        if any(process.wait() != 0 for process in side):
            raise SystemExit("a matrix job failed")
        matrix = time.monotonic() - started
    rows.append(f"| `build base aiidalab pyiron` cold, --jobs 1 / --jobs 2 | {figures[2]:.0f} | {figures[1]:.0f} | {figures[1] / figures[2]:.2f}x |")
    rows.append(f"| the same as a CI matrix on two engines / serial on one | {matrix:.0f} | {figures[1]:.0f} | {figures[1] / matrix:.2f}x |")


class _Throttled(http.server.SimpleHTTPRequestHandler):
    """A folder served at `rate` bytes per second in all (one link shared by every connection, as
    uv downloads many files at once): each 64 KiB chunk waits for its slot of the link's time."""

    rate = 2_000_000
    sent: ClassVar[list[int]] = [0]
    link_free_at: ClassVar[list[float]] = [0.0]
    link = threading.Lock()

    def copyfile(self, source, outputfile) -> None:  # type: ignore[no-untyped-def]
        while chunk := source.read(1 << 16):
            with self.link:
                start = max(time.monotonic(), self.link_free_at[0])
                self.link_free_at[0] = start + len(chunk) / self.rate
                self.sent[0] += len(chunk)
            time.sleep(max(0.0, start + len(chunk) / self.rate - time.monotonic()))
            outputfile.write(chunk)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def cache(rows: list[str], rate: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-buildkit-cache-") as scratch:
        root = Path(scratch) / "project"
        shutil.copytree(REPO / "images" / "base", root / "images" / "base")
        child = root / "images" / "heavy"
        child.mkdir(parents=True)
        (child / "image.toml").write_text('parent = "base"\n[python]\nrequirements = "requirements.txt"\n')
        base_pins = pins_of((REPO / "images" / "base" / "image.lock").read_text())
        pins = {name: version for name, version in pins_of((REPO / "images" / "aiidalab" / "image.lock").read_text()).items()
                if name not in base_pins}  # fmt: skip
        changed = "cowsay"  # one package more (a pin of aiidalab's may not move alone: its neighbours bound it)
        versions = {"before": pins, "after": {**pins, changed: "6.0"}, "again": {**pins, changed: "6.1"}}

        def write(which: str, nonce: str) -> None:
            lines = [f"# {nonce}\n"] + [f"{name}=={version}\n" for name, version in sorted(versions[which].items())]
            (child / "requirements.txt").write_text("".join(lines))

        env = dict(os.environ)
        for which in versions:  # every version in the wheelhouse, at full speed, untimed
            write(which, "sync")
            progress(f"mirror sync ({which})")
            synced = subprocess.run(["imagebuild", "mirror", "sync", "heavy", "--to", str(root / "wheelhouse")], cwd=root, env=env,
                                    capture_output=True, text=True, check=False)  # fmt: skip
            if synced.returncode != 0:
                raise SystemExit(f"mirror sync ({which}) failed:\n{synced.stderr[-3000:]}")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Throttled, directory=str(root / "wheelhouse")))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        (root / "mirrors").mkdir()
        (root / "mirrors" / "slow.toml").write_text(f'[pypi]\nindex_url = "http://127.0.0.1:{server.server_address[1]}/simple"\n')
        figures = {}
        for which, label in (("before", "warm-up"), ("after", "kept"), ("again", "emptied")):
            if label == "emptied":
                subprocess.run(["docker", "builder", "prune", "-f", "--filter", "type=exec.cachemount"], check=True, capture_output=True)
            write(which, f"{label}-{time.time()}")
            _Throttled.rate = int(rate * 1_000_000) if label != "warm-up" else 10**12  # the warm-up fills caches at full speed
            _Throttled.sent[0] = 0
            progress(f"build heavy through the {rate} MB/s index ({label})")
            seconds, _ = imagebuild(root, env, "build", "heavy", "--mirror", "slow", "--no-smoke")
            figures[label] = (seconds, _Throttled.sent[0] / 1e6)
        server.shutdown()
    kept, emptied = figures["kept"], figures["emptied"]
    rows.append(
        f"| rebuild after one pin was added ({changed}), {len(pins)} packages through a {rate} MB/s index: cache mount kept / emptied "
        f"| {kept[0]:.0f} ({kept[1]:.1f} MB) | {emptied[0]:.0f} ({emptied[1]:.1f} MB) | {emptied[0] / kept[0]:.2f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="fresh,parallel,cache")
    parser.add_argument("--rate", type=float, default=2.0, help="the throttled index's MB/s")
    arguments = parser.parse_args()
    rows = ["| what | this (s) | against (s) | ratio |", "| --- | ---: | ---: | ---: |"]
    items = arguments.items.split(",")
    if "cache" in items:
        cache(rows, arguments.rate)
    if "fresh" in items:
        fresh(rows)
    if "parallel" in items:
        parallel(rows)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
