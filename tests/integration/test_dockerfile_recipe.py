"""End to end, on loopback: an admin's own two-stage Dockerfile (apt, pip and a git clone, `FROM
debian:${SUITE}`), kept in a git repository of its own, is a dockerfile recipe. imagebuild locks
the repository's commit, builds the file through a mirror profile whose every endpoint is a
server of this test (the Debian archive proxy, the served wheelhouse, a git server), runs the
recipe's smoke notebook, pushes it and a hub selects it; a layered child adds a dev package and
an asset on top of it. The servers' access logs show where every package came from."""

import hashlib
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from imagebuild.build.builders import find_builder
from tests.conftest import free_port, git
from tests.integration.mirrored import TOKEN_VARIABLE, USER_VARIABLE, GitServer, MirroredSite

pytestmark = pytest.mark.engine

DOCKERFILE = """\
# A site's stack: tools are installed in one stage, the runtime stage takes what it needs
ARG SUITE
FROM debian:${SUITE} AS tools
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv git \\
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
RUN git clone https://git.example.invalid/greeting.git /opt/greeting && rm -rf /opt/greeting/.git

FROM debian:${SUITE} AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 --gid 100 jovyan
COPY --from=tools --chown=1000:100 /opt/venv /opt/venv
COPY --from=tools /opt/greeting /opt/greeting
RUN echo /opt/greeting > /opt/venv/lib/python3.11/site-packages/greeting.pth
ENV PATH=/opt/venv/bin:$PATH
USER 1000
WORKDIR /home/jovyan

FROM runtime AS debug
RUN echo "a stage after the target: never built" && exit 1
"""

MIRRORS = """\
[pypi]
index_url = "{index_url}"

[apt]
debian = "{proxy}/debian"
debian_security = "{proxy}/debian-security"

[git]
"https://git.example.invalid/" = "{git_url}/"
"""
PROFILE = MIRRORS + """
[serve]
pypi = "{wheelhouse}"

[[credentials]]
host = "{index_host}"
username_env = "{user_variable}"
password_env = "{token_variable}"
"""
PLAIN_PROFILE = MIRRORS + """
[registry]
"docker.io" = "{registry}/dockerhub"
"""
"""The same mirrors, and a registry mirror; an index without credentials: a plain docker build carries none."""


def _notebook(*sources: str) -> str:
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": s} for s in sources]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@dataclass(frozen=True)
class Stack:
    root: Path
    env: dict[str, str]
    git: GitServer
    commit: str
    outcomes: dict[str, dict]
    apt_before: int
    index_before: int


def _cli(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["imagebuild", *args], cwd=root, env=env, capture_output=True, text=True, timeout=2400)


def _served(site: MirroredSite) -> list[str]:
    """The served index's access log (written from the first request on)."""
    log = site.wheelhouse / "access.log"
    return log.read_text().splitlines() if log.is_file() else []


def _repository(folder: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    git(folder.parent, "init", "--quiet", "--initial-branch", "main", str(folder))
    git(folder, "add", "-A")
    git(folder, "commit", "--quiet", "-m", "first")
    return git(folder, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, engine, site: MirroredSite, registry) -> Iterator[Stack]:
    top = tmp_path_factory.mktemp("stack")
    # the greeting package, cloned by the Dockerfile from the git mirror (dumb HTTP: a bare repository)
    _repository(top / "greeting", {"greeting.py": "def hello():\n    return 'hello from a git mirror'\n"})
    git(top, "clone", "--quiet", "--bare", str(top / "greeting"), str(top / "git" / "greeting.git"))
    git(top / "git" / "greeting.git", "update-server-info")
    git_server = GitServer(top / "git")
    # the admin's own repository: Dockerfile and context in docker/, something the context leaves out
    commit = _repository(
        top / "stack-repo",
        {
            "docker/Dockerfile": DOCKERFILE,
            "docker/requirements.txt": "nbclient\nipykernel\n",
            "docker/.dockerignore": "notes/\n",
            "docker/notes/todo.md": "not sent to the engine\n",
            "README.md": "the site stack\n",
        },
    )
    # a dev package and an asset for the layered child
    _repository(
        top / "probe",
        {
            "pyproject.toml": '[build-system]\nrequires = ["flit_core>=3.9,<4"]\nbuild-backend = "flit_core.buildapi"\n\n'
            '[project]\nname = "stack-probe"\nversion = "0.1.0"\ndescription = "probe"\n',
            "stack_probe.py": '"""A dev package on a dockerfile parent."""\nVALUE = 42\n',
        },
    )
    table = top / "table.csv"
    table.write_text("element,valence\nSi,4\n")
    root = top / "project"
    (root / "images" / "site" / "smoke").mkdir(parents=True)
    (root / "images" / "child" / "smoke").mkdir(parents=True)
    (root / "mirrors").mkdir()
    (root / "imagebuild.toml").write_text('[build]\nrepository = "test-stack"\n')
    (root / "images" / "site" / "image.toml").write_text(
        'description = "a site stack from its own Dockerfile"\n'
        f'dockerfile = {{ repo = "{(top / "stack-repo").as_posix()}", ref = "main", path = "docker/Dockerfile", '
        'context = "docker", target = "runtime", args = { SUITE = "bookworm" }, python = "3.11.2", glibc = "2.36" }\n'
    )
    (root / "images" / "site" / "smoke" / "stack.ipynb").write_text(
        _notebook("import greeting, nbclient, sys\nassert sys.prefix == '/opt/venv', sys.prefix\nprint(greeting.hello())")
    )
    (root / "images" / "child" / "image.toml").write_text(
        'description = "the site stack with a dev package and an asset"\nparent = "site"\n\n'
        '[python]\nenvironment = "/opt/venv"\n\n'
        f'[[dev_packages]]\nname = "stack-probe"\nurl = "{(top / "probe").as_uri()}"\nref = "main"\n\n'
        f'[[assets]]\nname = "table"\nurls = ["{table.as_uri()}"]\n'
        f'sha256 = "{hashlib.sha256(table.read_bytes()).hexdigest()}"\ndest = "/opt/data"\n'
    )
    (root / "images" / "child" / "smoke" / "child.ipynb").write_text(
        _notebook(
            "import stack_probe, greeting\nassert stack_probe.VALUE == 42\n"
            "assert open('/opt/data/table.csv').read().startswith('element')"
        )
    )
    index_url = site.index_url  # the session's wheelhouse, served by imagebuild with credentials while it builds
    (root / "mirrors" / "local.toml").write_text(
        PROFILE.format(
            index_url=index_url,
            index_host=index_url.split("/")[2],
            proxy=site.proxy.url,
            git_url=git_server.url,
            wheelhouse=site.wheelhouse,
            user_variable=USER_VARIABLE,
            token_variable=TOKEN_VARIABLE,
        )
    )
    env = site.env
    locked = _cli(root, env, "lock", "site", "child")
    assert locked.returncode == 0, locked.stderr
    apt_before, index_before = len(site.proxy.log), len(_served(site))
    built = _cli(root, env, "build", "child", "site", "--mirror", "local", "--no-cache", "--push", "--registry", registry, "--json")
    assert built.returncode == 0, built.stderr[-4000:]
    outcomes = {outcome["name"]: outcome for outcome in json.loads(built.stdout)}
    yield Stack(root, env, git_server, commit, outcomes, apt_before, index_before)
    git_server.close()
    for image in engine.client.images.list(name="test-stack/*"):
        engine.client.images.remove(image.id, force=True)


def test_the_dockerfile_recipe_is_built_smoke_tested_and_pushed(stack):
    site, child = stack.outcomes["site"], stack.outcomes["child"]
    assert site["action"] == "built" and child["action"] == "built"
    assert [n["notebook"] for n in site["smoke"]["notebooks"]] == ["stack.ipynb"]
    assert [n["notebook"] for n in child["smoke"]["notebooks"]] == ["stack.ipynb", "child.ipynb"]
    assert site["published"]["tags"] and child["published"]["tags"]


def test_every_package_came_through_the_local_servers(stack, site):
    fetched = {request.path.rsplit("/", 1)[-1].split("_")[0] for request in site.proxy.log[stack.apt_before :]}
    assert {"git", "python3"} <= fetched, sorted(fetched)
    assert "python3-venv" in fetched or any(name.startswith("python3.11-venv") for name in fetched), sorted(fetched)
    served = _served(site)[stack.index_before :]
    for wheel in ("/files/nbclient-", "/files/ipykernel-", "/files/uv-"):  # uv: the child's installer
        assert any(wheel in line and " 200 " in line for line in served), (wheel, served[-20:])
    assert any(path.startswith("/greeting.git/") for path in stack.git.log), stack.git.log


def test_the_image_records_the_commit_and_keeps_no_mirror_setting(engine, stack):
    image = engine.client.images.get(stack.outcomes["site"]["ref"])
    labels = image.labels
    assert json.loads(labels["io.imagebuild.source"])["commit"] == stack.commit
    assert labels["io.imagebuild.base"] == "debian:bookworm"
    config = image.attrs["Config"]
    assert config["User"] == "1000" and config["WorkingDir"] == "/home/jovyan"
    assert not any("127.0.0.1" in variable for variable in config["Env"] or [])
    # the classic builder records the build arguments a RUN saw: only the build environment's address
    history = re.sub(r"IMAGEBUILD_BUILD_ENV=http://127\.0\.0\.1:\d+", "", json.dumps(image.history()))
    assert "127.0.0.1" not in history and "never built" not in history


def test_the_child_installs_into_the_parent_environment(engine, stack):
    script = (
        "stat -c %u /opt/venv/lib/python3.11/site-packages/stack_probe.py; "
        "python -c 'import stack_probe, greeting; print(stack_probe.__file__)'; cat /opt/data/table.csv"
    )
    out = engine.client.containers.run(stack.outcomes["child"]["ref"], ["bash", "-c", script], remove=True).decode()
    assert out.splitlines()[:2] == ["1000", "/opt/venv/lib/python3.11/site-packages/stack_probe.py"]
    assert "Si,4" in out


def test_a_hub_selects_the_published_dockerfile_image(stack, registry, tmp_path):
    folder = tmp_path / "hub"
    initialised = _cli(stack.root, stack.env, "hub", "init", str(folder), "--admin", "boss", "--registry", registry)
    assert initialised.returncode == 0, initialised.stderr
    tags = {name: stack.outcomes[name]["published"]["tags"][0]["tag"] for name in ("site", "child")}
    selected = _cli(stack.root, stack.env, "hub", "select", *(f"{n}:{t}" for n, t in tags.items()), "--dir", str(folder))
    assert selected.returncode == 0, selected.stderr
    offered = tomllib.loads((folder / "images.toml").read_text())["images"]
    assert [(item["image"], item["tag"]) for item in offered] == list(tags.items())
    assert all(item["ref"].startswith(f"{registry}/test-stack/") and "@sha256:" in item["ref"] for item in offered)


def test_a_new_commit_of_the_stack_is_a_new_image_only_after_lock(stack):
    """The content hash follows the locked commit; files outside what COPY takes do not count."""
    planned = json.loads(_cli(stack.root, stack.env, "plan", "site", "--mirror", "local", "--json").stdout)
    assert planned[0]["action"] == "reuse"



def test_the_same_dockerfile_rewritten_builds_through_the_mirrors_without_imagebuild(engine, stack, site, registry, tmp_path):
    """`mirror rewrite`, then the engine alone builds the file: FROM comes from the registry mirror,
    apt's packages from the archive mirror, pip's from the index, the clone from the git mirror;
    the image's configuration and files keep no mirror setting."""
    from imagebuild.mirrors.serve import IndexServer

    mirrored_root = f"{registry}/dockerhub/library/debian:bookworm"
    engine.client.images.get("debian:bookworm").tag(mirrored_root)
    engine.client.images.push(mirrored_root)
    engine.client.images.remove(mirrored_root)  # the build must pull it from the registry mirror
    context = tmp_path / "docker"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "requirements.txt").write_text("nbclient\nipykernel\n")
    with IndexServer(site.wheelhouse, f"http://127.0.0.1:{free_port()}/simple") as index:
        profile = tmp_path / "plain.toml"
        profile.write_text(PLAIN_PROFILE.format(index_url=index.url, proxy=site.proxy.url, git_url=stack.git.url, registry=registry))
        rewritten = _cli(stack.root, stack.env, "mirror", "rewrite", str(context / "Dockerfile"), "--mirror", str(profile), "--in-place", "--strict")
        assert rewritten.returncode == 0, rewritten.stderr
        text = (context / "Dockerfile").read_text()
        assert text.count(f"FROM {registry}/dockerhub/library/debian:${{SUITE}}") == 2, text
        apt_before, index_before, git_before = len(site.proxy.log), len(_served(site)), len(stack.git.log)
        secret = context / "Dockerfile.mirror.sh"
        assert f"--secret id=imagebuild-mirror,src={secret}" in rewritten.stderr  # the command to build it, printed
        builder = find_builder("buildkit", os.environ)
        build = [builder.cli, *(["buildx", "build", "--load"] if builder.kind == "buildx" else ["build"])]
        built = subprocess.run(
            [*build, "--progress=plain", "--network=host", f"--secret=id=imagebuild-mirror,src={secret}", "--build-arg=SUITE=bookworm",
             "--target=runtime", "--no-cache", "--tag=test-stack-rewritten:latest", str(context)],
            env={**os.environ, "DOCKER_BUILDKIT": "1"}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        image = engine.client.images.get("test-stack-rewritten:latest")
    try:
        assert f"{registry}/dockerhub/library/debian:bookworm" in built.stdout + built.stderr  # FROM through the registry mirror
        addresses = [index.url.split("/simple")[0].removeprefix("http://"), site.proxy.url.removeprefix("http://"), stack.git.url]
        history = json.dumps(image.history())
        assert not any(address.removeprefix("http://") in history for address in addresses), history  # the secret form
        fetched = {request.path.rsplit("/", 1)[-1].split("_")[0] for request in site.proxy.log[apt_before:]}
        assert {"git", "python3"} <= fetched, sorted(fetched)
        served = _served(site)[index_before:]
        assert any("/files/nbclient-" in line and " 200 " in line for line in served), served[-10:]
        assert any(path.startswith("/greeting.git/") for path in stack.git.log[git_before:])
        config = image.attrs["Config"]
        assert not any("127.0.0.1" in variable or variable.startswith(("PIP_", "UV_", "CONDARC", "APT_CONFIG", "GIT_CONFIG"))
                       for variable in config["Env"] or [])  # fmt: skip
        kept = engine.client.containers.run(
            image.id, ["bash", "-c", "cat /etc/apt/sources.list.d/* /etc/pip.conf 2>/dev/null; git config -l 2>/dev/null; ls -A /dev/shm"],
            remove=True, network_mode="none", user="0",
        ).decode()  # fmt: skip
        assert "127.0.0.1" not in kept and "imagebuild-mirror" not in kept
        assert engine.client.containers.run(image.id, ["python", "-c", "import greeting; print(greeting.hello())"], remove=True)
    finally:
        engine.client.images.remove(image.id, force=True)
