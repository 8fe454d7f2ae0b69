"""Benchmark: imagebuild's build times against plain `docker build` and a by-hand Dockerfile.

Side by side in one run on this machine; plain `docker build` builds the very Dockerfiles and
contexts imagebuild renders. Prints a Markdown table (figure per side, ratio); asserts nothing.

    python bench/build_speed.py [--items 1,2,3,4,5] [--registry HOST]

1. no-change `imagebuild nightly` on a fresh engine vs plain `docker build` on a fresh engine
2. no-change `imagebuild build --all` on a warm engine vs a warm-cache plain `docker build`
3. `imagebuild build aiidalab` after a change to one smoke notebook only vs a cold build of it
4. that cold build (smoke time subtracted) vs a by-hand single Dockerfile with the same packages
5. `base` built cold through a warm local mirror vs from the upstream indexes (mirror_build.py)

Item 1 removes every image from the engine but the root image; items 2 to 4 put the project's
tags back where they found them. The plain side builds the contexts imagebuild renders
(pipeline.prepare), served the same build environment (the host CA), so only the pipeline
around `docker build` differs. Item 4 uses item 3's cold build (or runs it alone).
"""

import argparse
import contextlib
import datetime
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import nbformat
from nbformat.v4 import new_code_cell

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# It runs the `imagebuild` command: from a virtual environment that is not activated
# (`.venv/bin/python bench/...`), that command is found only beside this interpreter.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])

from bench.mirror_build import measure as measure_mirror
from imagebuild.build.buildenv import BUILD_ARG, BuildEnvironment, BuildEnvServer
from imagebuild.build.context import BuildContext
from imagebuild.config import RunOptions, merged_trust, resolve
from imagebuild.inputs.fetch import Fetcher
from imagebuild.mirrors.build import build_environment
from imagebuild.model.project import Project, load_project
from imagebuild.pipeline import prepare
from imagebuild.plan import plan
from imagebuild.reuse import content_ref

ROOT_IMAGE = "debian:bookworm"
BY_HAND_TAG = "bench-by-hand/aiidalab:latest"
BY_HAND_EXTRAS = ["python3-venv", "python3-dev", "build-essential", "git"]
ITEMS = {1, 2, 3, 4, 5}
STARTED = time.monotonic()


def progress(message: str) -> None:
    """A line on stderr with the time since start, so a long run shows what it is doing."""
    minutes, seconds = divmod(int(time.monotonic() - STARTED), 60)
    print(f"[{minutes:3d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Row:
    """One line of the table: the imagebuild side, what it is compared with, and their ratio
    (figures in seconds, or sizes in bytes shown as GB)."""

    item: str
    ours: str
    our_figure: float
    theirs: str
    their_figure: float
    unit: str = "s"

    def markdown(self) -> str:
        ratio = f"{self.their_figure / self.our_figure:.2f}x" if self.our_figure else "-"
        ours, theirs = _figure(self.our_figure, self.unit), _figure(self.their_figure, self.unit)
        return f"| {self.item} | {self.ours} | {ours} | {self.theirs} | {theirs} | {ratio} |"


def _figure(value: float, unit: str) -> str:
    return f"{value / 1e9:.2f} GB" if unit == "GB" else f"{value:.1f} s"


def imagebuild(cwd: Path, *args: str) -> tuple[float, Any]:
    """Seconds a `--json` CLI call took and its parsed output; its messages go to our stderr."""
    progress(f"imagebuild {shlex.join(args)}")
    started = time.monotonic()
    completed = subprocess.run(["imagebuild", *args], cwd=cwd, stdout=subprocess.PIPE, text=True, check=False)
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise SystemExit(f"'imagebuild {shlex.join(args)}' exited with {completed.returncode} (its messages are above)")
    return seconds, json.loads(completed.stdout)


@dataclass(frozen=True)
class Run:
    """One `imagebuild build --json`: wall-clock seconds, the smoke notebooks' share, the outcomes."""

    seconds: float
    smoke_seconds: float
    outcomes: list[dict]


def timed_build(root: Path, *args: str) -> Run:
    seconds, outcomes = imagebuild(root, "build", *args, "--json")
    smoke = sum(notebook["seconds"] for outcome in outcomes if outcome["smoke"] for notebook in outcome["smoke"]["notebooks"])
    return Run(seconds, smoke, outcomes)


def fresh_engine(client: docker.DockerClient) -> None:
    """Every image but the root image removed (leaves first, until nothing more goes), and the
    builder cache pruned. The root image stays: it is bootstrapped from the Debian archive, it
    cannot be pulled here, and both sides build on it."""
    keep = client.images.get(ROOT_IMAGE).id
    removed = True
    while removed:
        removed = False
        for image in client.images.list(all=True):
            if image.id == keep:
                continue
            with contextlib.suppress(docker.errors.APIError):  # has children (a later pass) or is gone
                client.images.remove(image.id, force=True)
                removed = True
    client.api.prune_builds(all=True)
    progress(f"fresh engine: {len(client.images.list(all=True))} image(s) left")


@contextlib.contextmanager
def tags_restored(client: docker.DockerClient, repository: str) -> Iterator[None]:
    """The project's tags (`repository/...`) pointing where they did before, new ones removed."""
    before = _tags(client, repository)
    try:
        yield
    finally:
        after = _tags(client, repository)
        for ref, image_id in before.items():
            if after.get(ref) != image_id:
                client.images.get(image_id).tag(*ref.rsplit(":", 1))
        for ref in after.keys() - before.keys():
            client.images.remove(ref)
        progress(f"{repository}/ tags restored")


def _tags(client: docker.DockerClient, repository: str) -> dict[str, str]:
    return {tag: image.id for image in client.images.list() for tag in image.tags if tag.startswith(f"{repository}/")}


@dataclass(frozen=True)
class Rendered:
    """Every image's build context as imagebuild renders it, and the environment its builds are served."""

    project: Project
    contexts: list[BuildContext]
    environment: BuildEnvironment

    def hashes(self) -> dict[str, str]:
        return {context.rendered.plan.name: context.content_hash for context in self.contexts}


def render_all(project: Project) -> Rendered:
    config = resolve(RunOptions(), project=project)
    contexts = prepare(Fetcher(config, progress), plan(project, [], everything=True))
    logins = config.logins() if config.mirror else {}
    return Rendered(project, contexts, build_environment(config.mirror, logins, config.ca_pem, config.debian_archive))


def plain_build(
    client: docker.DockerClient, tag: str, *, nocache: bool = False, buildargs: dict | None = None, **source: object
) -> None:
    """`docker build` through the SDK, host networking as imagebuild's, step lines to stderr."""
    stream = client.api.build(
        tag=tag,
        nocache=nocache,
        buildargs=buildargs,
        network_mode="host",
        pull=False,
        rm=True,
        forcerm=True,
        decode=True,
        **source,
    )
    for chunk in stream:
        if "error" in chunk:
            raise SystemExit(f"docker build of {tag} failed: {chunk['error'].strip()}")
        for line in chunk.get("stream", "").splitlines():
            if line.startswith("Step "):
                progress(f"  {line[:110]}")


def plain_build_all(client: docker.DockerClient, rendered: Rendered) -> float:
    """Seconds to build every rendered context with plain `docker build`, parents first, each tagged
    with the content tag its children's FROM names, against imagebuild's build-environment server."""
    project = rendered.project
    with BuildEnvServer(rendered.environment, project.config.build.env_port) as server:
        buildargs = {BUILD_ARG: server.url()}
        if rendered.environment and not buildargs[BUILD_ARG].endswith(f":{project.config.build.env_port}"):
            progress(f"warning: the build environment is served at {buildargs[BUILD_ARG]}: the layer cache will miss")
        started = time.monotonic()
        for context in rendered.contexts:
            ref = content_ref(project, context.rendered.plan.name, context.content_hash)
            progress(f"docker build {ref}")
            plain_build(client, ref, buildargs=buildargs, fileobj=io.BytesIO(context.classic_tar()), custom_context=True)
        return time.monotonic() - started


def no_change_nightly(client: docker.DockerClient, project: Project, registry: str) -> list[Row]:
    """Item 1: both sides start from an engine holding only the root image."""
    nightly = ("nightly", "--push", "--keep-locks", "--registry", registry, "--json")
    progress("item 1 setup: every image in the registry under its content tag")
    imagebuild(REPO, *nightly)
    rendered = render_all(project)
    fresh_engine(client)
    seconds, report = imagebuild(REPO, *nightly)
    built = sum(image["action"] == "built" for image in report["images"])
    fresh_engine(client)
    plain = plain_build_all(client, rendered)
    ours = f"`imagebuild nightly --push` ({built} of {len(report['images'])} built)"
    return [Row("1 no-change nightly, fresh engine", ours, seconds, "plain `docker build` of every image", plain)]


def no_change_build_all(client: docker.DockerClient, project: Project) -> list[Row]:
    """Item 2: imagebuild reuses what it built; plain docker rebuilds from its own warm cache."""
    progress("item 2 setup: the engine back to imagebuild's state (build --all: warm layer cache, smoke)")
    imagebuild(REPO, "build", "--all", "--json")
    run = timed_build(REPO, "--all")
    reused = sum(outcome["action"] == "reused" for outcome in run.outcomes)
    rendered = render_all(project)
    if {outcome["name"]: outcome["content_hash"] for outcome in run.outcomes} != rendered.hashes():
        progress("warning: the plain side renders other content hashes than `build --all` reported")
    with tags_restored(client, project.config.build.repository):
        progress("plain docker build once untimed, so its own layer cache holds every image")
        plain_build_all(client, rendered)
        plain = plain_build_all(client, rendered)
    ours = f"`imagebuild build --all` ({reused} of {len(run.outcomes)} reused)"
    return [Row("2 no-change build, warm engine", ours, run.seconds, "plain `docker build`, warm cache", plain)]


@contextlib.contextmanager
def project_copy(project: Project) -> Iterator[Path]:
    """A throwaway copy of the project's inputs: the repository's own files are never touched."""
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as scratch:
        root = Path(scratch)
        shutil.copytree(project.root / project.config.images, root / project.config.images)
        if (project.root / "imagebuild.toml").is_file():
            shutil.copy2(project.root / "imagebuild.toml", root / "imagebuild.toml")
        if (project.root / "mirrors").is_dir():
            shutil.copytree(project.root / "mirrors", root / "mirrors")
        yield root


def change_smoke_notebook(root: Path) -> Path:
    """A harmless code cell added to an aiidalab smoke notebook: a top-level input, no layer."""
    path = sorted((root / "images" / "aiidalab" / "smoke").glob("*.ipynb"))[0]
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(new_code_cell('print("bench/build_speed.py: a top-level change")'))
    nbformat.write(notebook, path)
    return path


@dataclass(frozen=True)
class ColdBuild:
    """`imagebuild build aiidalab --no-cache` (base and aiidalab, smoke included), and aiidalab's size."""

    run: Run
    size: int


def cold_build(client: docker.DockerClient, root: Path) -> ColdBuild:
    run = timed_build(root, "aiidalab", "--no-cache")
    image_id = next(outcome["image_id"] for outcome in run.outcomes if outcome["name"] == "aiidalab")
    return ColdBuild(run, client.images.get(image_id).attrs["Size"])


def top_level_change(client: docker.DockerClient, project: Project) -> tuple[list[Row], ColdBuild]:
    """Item 3, in a copy of the project: the changed image's layers come from the cache, its
    smoke notebooks run again; the cold build rebuilds base and aiidalab without the cache."""
    with project_copy(project) as root, tags_restored(client, project.config.build.repository):
        progress("item 3 setup: aiidalab as imagebuild left it (reused when present)")
        imagebuild(root, "build", "aiidalab", "--json")
        changed = change_smoke_notebook(root)
        progress(f"item 3: changed only {changed.relative_to(root)}")
        rebuild = timed_build(root, "aiidalab")
        cold = cold_build(client, root)
    ours = f"`imagebuild build aiidalab` (smoke {rebuild.smoke_seconds:.1f} s)"
    theirs = f"cold `imagebuild build aiidalab --no-cache` (smoke {cold.run.smoke_seconds:.1f} s)"
    return [Row("3 aiidalab after a top-level change", ours, rebuild.seconds, theirs, cold.run.seconds)], cold


def cold_build_alone(client: docker.DockerClient, project: Project) -> ColdBuild:
    """Item 4 without item 3: only the cold build, in an unchanged copy of the project."""
    with project_copy(project) as root, tags_restored(client, project.config.build.repository):
        return cold_build(client, root)


def _requirements(project: Project, names: list[str]) -> list[str]:
    """The top-level requirement lines of the recipes (not their locks), comments dropped."""
    lines = []
    for name in names:
        path = project.recipes[name].requirements
        assert path is not None
        lines += [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def by_hand_dockerfile(project: Project, with_ca: bool) -> str:
    """What admins write today: one apt-get install, the CA copied in, one pip install, compilers kept."""
    names = ["base", "aiidalab"]
    packages = sorted({package for name in names for package in project.recipes[name].apt_packages} | set(BY_HAND_EXTRAS))
    lines = [
        f"FROM {ROOT_IMAGE}",
        "ENV DEBIAN_FRONTEND=noninteractive",
        f"RUN apt-get update && apt-get install -y --no-install-recommends {' '.join(packages)}",
    ]
    if with_ca:
        lines += ["COPY host-ca.pem /etc/ssl/host-ca.pem", "ENV PIP_CERT=/etc/ssl/host-ca.pem"]
    lines += [
        "RUN python3 -m venv /opt/venv",
        "ENV PATH=/opt/venv/bin:$PATH",
        f"RUN pip install {shlex.join(_requirements(project, names))}",
    ]
    return "\n".join(lines) + "\n"


def by_hand(client: docker.DockerClient, project: Project, cold: ColdBuild) -> list[Row]:
    """Item 4: imagebuild's cold aiidalab (smoke time subtracted) against the by-hand Dockerfile, no cache."""
    ca_bundle = merged_trust(os.environ, None, None)
    with tempfile.TemporaryDirectory(prefix="bench-by-hand-") as scratch:
        (Path(scratch) / "Dockerfile").write_text(by_hand_dockerfile(project, ca_bundle is not None))
        if ca_bundle is not None:
            (Path(scratch) / "host-ca.pem").write_bytes(ca_bundle)
        progress(f"item 4: docker build --no-cache {BY_HAND_TAG}")
        started = time.monotonic()
        plain_build(client, BY_HAND_TAG, nocache=True, path=scratch)
        seconds = time.monotonic() - started
    size = client.images.get(BY_HAND_TAG).attrs["Size"]
    client.images.remove(BY_HAND_TAG)
    run = cold.run
    ours = f"`imagebuild build aiidalab --no-cache` ({run.seconds:.1f} s - smoke {run.smoke_seconds:.1f} s)"
    theirs = "by-hand Dockerfile, `docker build --no-cache`"
    return [
        Row("4 cold build of aiidalab, without smoke", ours, run.seconds - run.smoke_seconds, theirs, seconds),
        Row("4 final image size", "imagebuild's aiidalab", cold.size, "by-hand Dockerfile", size, unit="GB"),
    ]


def warm_mirror() -> list[Row]:
    """Item 5: bench/mirror_build.py's measurement, one round."""
    progress("item 5: bench/mirror_build.py, 1 round")
    figures = measure_mirror(1)
    theirs = f"straight from upstream (PyPI, {figures.upstream})"
    return [Row("5 cold build of base", "through a warm local mirror", figures.warm_median, theirs, figures.upstream_median)]


def header(client: docker.DockerClient, items: set[int]) -> None:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    revision = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    print(f"# Build speed, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\n")
    print(f"- machine: {len(os.sched_getaffinity(0))} CPUs, {memory:.1f} GiB, Docker {client.version()['Version']}")
    print(f"- project: commit {revision.stdout.strip() or 'unknown'}")
    print(f"- command: {shlex.join(['python', *sys.argv])}")
    if 1 in items:
        print(f"- fresh engine (item 1): every image removed but `{ROOT_IMAGE}`, and the builder cache pruned;")
        print("  the root image stays: it is bootstrapped from the Debian archive, cannot be pulled here, and both sides need it")
    print("\n| item | imagebuild side | figure | compared with | figure | compared / imagebuild |")
    print("| --- | --- | ---: | --- | ---: | ---: |", flush=True)


def emit(rows: list[Row]) -> None:
    """Rows print as each item finishes: a run that fails later keeps what it measured."""
    for row in rows:
        print(row.markdown(), flush=True)


def parse_items(text: str) -> set[int]:
    items = {int(part) for part in text.split(",") if part.strip()}
    if not items or not items <= ITEMS:
        raise argparse.ArgumentTypeError(f"choose from {','.join(map(str, sorted(ITEMS)))}")
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=parse_items, default=ITEMS, help="comma-separated subset of 1,2,3,4,5 (default: all)")
    parser.add_argument("--registry", default="127.0.0.1:5000", help="registry HOST[:PORT] for item 1's nightly")
    args = parser.parse_args()
    client = docker.from_env(timeout=3600)
    project = load_project(REPO)
    header(client, args.items)
    if 1 in args.items:
        emit(no_change_nightly(client, project, args.registry))
    if 2 in args.items:
        emit(no_change_build_all(client, project))
    cold = None
    if 3 in args.items:
        rows, cold = top_level_change(client, project)
        emit(rows)
    if 4 in args.items:
        emit(by_hand(client, project, cold or cold_build_alone(client, project)))
    if 5 in args.items:
        emit(warm_mirror())


if __name__ == "__main__":
    main()
