"""Which builder builds (pure choice from the CLIs a host has), the Dockerfile the classic
builder gets, the build environment as a secret script, and images side by side."""

import subprocess
import threading
import time
from pathlib import Path

import pytest

from imagebuild.build.buildenv import SECRET_MOUNT, BuildEnvironment, run_mounts, without_mounts
from imagebuild.build.builders import Cli, choose_builder
from imagebuild.errors import RecipeError
from imagebuild.schedule import side_by_side

DEBIAN_20 = Cli("/usr/bin/docker", "20.10.24+dfsg1", buildx=False)
NEWER_WITHOUT_BUILDX = Cli("/usr/local/bin/docker", "28.2.2", buildx=False)
WITH_BUILDX = Cli("/usr/bin/docker", "26.1.5+dfsg1", buildx=True)


def test_auto_prefers_buildx_then_a_cli_that_builds_alone_and_never_one_that_refuses():
    assert choose_builder("auto", [NEWER_WITHOUT_BUILDX, WITH_BUILDX], {}).kind == "buildx"
    chosen = choose_builder("auto", [NEWER_WITHOUT_BUILDX, DEBIAN_20], {})
    assert (chosen.kind, chosen.cli) == ("buildkit", "/usr/bin/docker")
    assert "/usr/local/bin/docker 28.2.2 refuses BuildKit without the buildx plugin" in chosen.note
    fallback = choose_builder("auto", [NEWER_WITHOUT_BUILDX], {})
    assert fallback.kind == "classic" and not fallback.uses_buildkit and "refuses BuildKit" in fallback.note
    assert choose_builder("classic", [WITH_BUILDX], {}).kind == "classic"


def test_buildkit_required_but_only_a_refusing_cli_is_one_clear_error():
    with pytest.raises(RecipeError) as caught:
        choose_builder("buildkit", [NEWER_WITHOUT_BUILDX], {})
    assert "--builder buildkit" in str(caught.value) and "refuses BuildKit" in str(caught.value)
    assert "docker-buildx" in (caught.value.hint or "")


def test_a_named_builder_must_exist_in_buildx():
    chosen = choose_builder("remote-arm", [WITH_BUILDX], {WITH_BUILDX.path: ["default", "remote-arm"]})
    assert (chosen.kind, chosen.name) == ("buildx", "remote-arm")
    assert "builder 'remote-arm'" in chosen.describe()
    with pytest.raises(RecipeError, match=r"no buildx builder of that name .builders: default"):
        choose_builder("k8s", [WITH_BUILDX], {WITH_BUILDX.path: ["default"]})
    with pytest.raises(RecipeError, match="no docker CLI here has buildx"):
        choose_builder("k8s", [DEBIAN_20], {})


def test_the_classic_builder_gets_the_dockerfile_without_imagebuilds_mounts_only():
    dockerfile = (
        f"FROM x\nRUN {run_mounts(1000, 100)} with-build-env uv pip install a\n"
        "RUN --mount=type=cache,target=/root/.cache/pip pip install b\n"
        f"RUN {SECRET_MOUNT} echo c\n"
    )
    assert without_mounts(dockerfile) == (
        "FROM x\nRUN with-build-env uv pip install a\nRUN --mount=type=cache,target=/root/.cache/pip pip install b\nRUN echo c\n"
    )
    assert "id=imagebuild-apt" in run_mounts() and "id=imagebuild-apt" not in run_mounts(1000, 100)
    assert "id=imagebuild-uv-1000,target=/var/cache/imagebuild/uv,uid=1000,gid=100" in run_mounts(1000, 100)


def test_the_secret_script_recreates_every_document_byte_for_byte(tmp_path: Path):
    environment = BuildEnvironment(
        ca_bundle=b"-----BEGIN CERTIFICATE-----\nAB'C\"$x\n-----END CERTIFICATE-----\n",
        variables=(("PIP_INDEX_URL", "https://u:p'w$@mirror.example/simple"),),
        apt_sed="s#http://deb.debian.org#http://mirror.example#g\n",
        condarc="channel_alias: https://conda.example\n",
    )
    script = tmp_path / "secret"
    script.write_bytes(environment.secret_script())
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shown = subprocess.run(
        ["sh", "-c", '. "$1" && printf %s "$PIP_INDEX_URL"', "sh", str(script)],
        env={"scratch": str(scratch), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, check=True,
    )
    assert shown.stdout == "https://u:p'w$@mirror.example/simple"
    documents = environment.documents()
    assert (scratch / "ca.pem").read_bytes() == documents["/ca.pem"]
    assert (scratch / "apt.sed").read_bytes() == documents["/apt.sed"]
    assert (scratch / "condarc").read_bytes() == documents["/condarc"]


def test_images_start_once_their_parent_is_done_at_most_jobs_at_a_time():
    parents = {"base": None, "a": "base", "b": "base", "c": "base", "a1": "a"}
    running: list[str] = []
    peak = []
    order = []
    lock = threading.Lock()

    def work(name: str) -> str:
        with lock:
            running.append(name)
            peak.append(len(running))
            order.append(("start", name))
        time.sleep(0.05)
        with lock:
            running.remove(name)
            order.append(("end", name))
        return name.upper()

    results = side_by_side(list(parents), name=lambda n: n, after=parents.get, jobs=2, work=work)
    assert results == ["BASE", "A", "B", "C", "A1"]
    assert max(peak) == 2
    for child, parent in parents.items():
        if parent:
            assert order.index(("end", parent)) < order.index(("start", child))


def test_after_a_failure_nothing_new_starts_and_the_failure_is_raised():
    started = []

    def work(name: str) -> str:
        started.append(name)
        if name == "base":
            raise RecipeError("base broke")
        return name

    with pytest.raises(RecipeError, match="base broke"):
        side_by_side(["base", "child"], name=lambda n: n, after={"child": "base"}.get, jobs=2, work=work)
    assert started == ["base"]
