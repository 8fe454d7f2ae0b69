"""Benchmark: `base` built from scratch (--no-cache) straight from the upstream indexes versus
through a warm local mirror (a synced wheelhouse served by imagebuild, and a caching Debian
archive proxy), side by side in one run on this machine. Prints the figures; asserts nothing.

    python bench/mirror_build.py [--rounds N]

(bench/build_speed.py imports `measure` for its table.)

The root image is already in the engine (bootstrapping is not timed). The first mirrored
build warms the archive proxy and is reported as 'mirror, cold'.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# It runs the `imagebuild` command: from a virtual environment that is not activated
# (`.venv/bin/python bench/...`), that command is found only beside this interpreter.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from imagebuild.config import RunOptions, resolve
from imagebuild.model.project import load_project
from tests.integration.archive_proxy import ArchiveProxy

PROFILE = """\
description = "benchmark mirrors on loopback"
[pypi]
index_url = "http://127.0.0.1:{port}/simple"
[apt]
debian = "{proxy}/debian"
debian_security = "{proxy}/debian-security"
[serve]
pypi = "../wheelhouse"
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(root: Path, *args: str) -> float:
    started = time.monotonic()
    subprocess.run(["imagebuild", *args], cwd=root, check=True, capture_output=True, text=True)
    return time.monotonic() - started


@dataclass(frozen=True)
class MirrorFigures:
    """One run's seconds: the sync, the build that warmed the archive proxy, and each round's
    upstream and warm-mirror build of `base --no-cache`."""

    upstream: str
    sync: float
    cold: float
    direct: list[float]
    mirrored: list[float]

    @property
    def upstream_median(self) -> float:
        return statistics.median(self.direct)

    @property
    def warm_median(self) -> float:
        return statistics.median(self.mirrored)


def measure(rounds: int) -> MirrorFigures:
    """Sync, warm the archive proxy, then alternate upstream and mirrored builds `rounds` times."""
    with tempfile.TemporaryDirectory(prefix="bench-mirror-") as scratch:
        root = Path(scratch) / "project"
        shutil.copytree(REPO / "images" / "base", root / "images" / "base")
        (root / "imagebuild.toml").write_text('[build]\nrepository = "bench-mirror"\n')
        upstream = resolve(RunOptions(mirror="none"), project=load_project(REPO)).debian_archive
        proxy = ArchiveProxy(upstream=upstream.rsplit("/debian", 1)[0], cache=Path(scratch) / "apt-cache")
        (root / "mirrors").mkdir()
        (root / "mirrors" / "bench.toml").write_text(PROFILE.format(port=free_port(), proxy=proxy.url))
        sync = timed(root, "mirror", "sync", "base", "--to", "wheelhouse")
        build = ("build", "base", "--no-cache", "--no-smoke")
        cold = timed(root, *build, "--mirror", "bench")
        direct, mirrored = [], []
        for _ in range(rounds):
            direct.append(timed(root, *build, "--mirror", "none"))
            mirrored.append(timed(root, *build, "--mirror", "bench"))
        proxy.close()
        subprocess.run(["docker", "image", "rm", "-f", *_tags()], capture_output=True, check=False)
    return MirrorFigures(upstream=upstream, sync=sync, cold=cold, direct=direct, mirrored=mirrored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="builds per side (alternating)")
    rounds = parser.parse_args().rounds
    figures = measure(rounds)
    upstream_s, warm_s = figures.upstream_median, figures.warm_median
    print(f"base, --no-cache, {rounds} round(s) per side, upstream {figures.upstream}")
    print(f"  mirror sync base (once)     {figures.sync:7.1f} s")
    print(f"  mirror, cold archive proxy  {figures.cold:7.1f} s")
    print(f"  upstream (PyPI + Debian)    {upstream_s:7.1f} s   runs: {', '.join(f'{t:.1f}' for t in figures.direct)}")
    print(f"  mirror, warm                {warm_s:7.1f} s   runs: {', '.join(f'{t:.1f}' for t in figures.mirrored)}")
    print(f"  upstream / warm mirror      {upstream_s / warm_s:7.2f}x")


def _tags() -> list[str]:
    listing = subprocess.run(
        ["docker", "image", "ls", "bench-mirror/base", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return listing.stdout.split()


if __name__ == "__main__":
    main()
