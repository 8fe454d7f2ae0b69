"""`mirror rewrite` of Dockerfiles built without imagebuild: every shell-form RUN gets the
profile's build-time settings, on the real-world Dockerfiles of ../shared/dockerfiles and of our
own (tests/fixtures/dockerfiles: a site image like the one behind the Great Firewall, Ubuntu with
uv and micromamba, a multi-stage build with COPY --from images), and small cases."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from imagebuild.build.stack import KEYWORDS
from imagebuild.cli.main import app
from imagebuild.errors import ImagebuildError
from imagebuild.mirrors.rewrite import FileKind, rewrite_file
from imagebuild.mirrors.rewrite.buildtime import BEGIN, END, SECRET_FLAG, run_prefix, run_settings
from imagebuild.mirrors.rewrite.dockerfile import dockerfile_instructions, unrouted_runs
from imagebuild.model.mirror import MirrorProfile, load_mirror, profile_paths
from tests.unit.test_mirror_files import without_run_prefixes

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "dockerfiles"
OURS = ROOT / "tests" / "fixtures" / "dockerfiles"
REAL_WORLD = sorted(SHARED.glob("*/*.Dockerfile")) + sorted(OURS.glob("*.Dockerfile"))
PROFILES = {name: load_mirror(name, ROOT).spec for name in profile_paths(ROOT)}
SITE = MirrorProfile.model_validate(
    {
        "pypi": {"index_url": "http://pypi.site/simple", "trusted_hosts": ["pypi.site"]},
        "conda": {"channels": {"conda-forge": "http://conda.site/conda-forge"}},
        "apt": {"debian": "http://apt.site/debian"},
        "git": {"https://github.com": "http://git.site/github.com"},
        "registry": {"docker.io": "registry.site/hub"},
    }
)


def rewrite(text: str, profile: MirrorProfile, *, plain: bool = True) -> str:
    """The plain form shows the settings in each RUN; the BuildKit form sources them from a secret."""
    return rewrite_file(FileKind.DOCKERFILE, text, profile, source=Path("Dockerfile"), plain_runs=plain)


@pytest.mark.skipif(not REAL_WORLD, reason="../shared/dockerfiles is not beside the repository")
@pytest.mark.parametrize("plain", [True, False], ids=["plain", "secret"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("path", REAL_WORLD, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_real_world_dockerfiles(path: Path, profile: str, plain: bool) -> None:
    spec = PROFILES[profile]
    text = path.read_text()
    out = rewrite(text, spec, plain=plain)
    assert rewrite(out, spec, plain=plain) == out  # idempotent
    before, after = text.splitlines(), out.splitlines()
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):  # every changed line is one the rewriter meant to change
        if old != new and without_run_prefixes(new) != old:
            assert "://" in old or old.lstrip().upper().startswith(("FROM", "ARG", "COPY")), (old, new)
    instructions = dockerfile_instructions(out)
    assert [keyword for keyword, _, _ in instructions] == [keyword for keyword, _, _ in dockerfile_instructions(text)]
    assert {keyword for keyword, _, _ in instructions} <= set(KEYWORDS)  # it still parses as a Dockerfile
    if run_prefix(spec) is not None:  # every RUN (all are shell form here) is routed
        runs = [" ".join(words) for keyword, _, words in instructions if keyword == "RUN"]
        assert runs and all(BEGIN in run for run in runs)
        assert unrouted_runs(text, spec) == []
        if not plain:  # the settings come from the secret: no mirror address in any RUN, so none in docker history
            assert all(run.count(SECRET_FLAG) == 1 and ". /run/secrets/imagebuild-mirror;" in run for run in runs)
            secret = run_settings(spec)
            assert secret is not None and not any(secret in run for run in runs)


def test_the_secret_form_keeps_mirror_addresses_out_of_run_lines_and_a_second_rewrite_changes_nothing() -> None:
    text = "FROM debian:bookworm\nRUN --mount=type=cache,target=/root/.cache pip install x && \\\n    apt-get install -y git\n"
    out = rewrite(text, SITE, plain=False)
    assert out == (
        "FROM registry.site/hub/library/debian:bookworm\n"
        f"RUN {SECRET_FLAG} --mount=type=cache,target=/root/.cache {BEGIN} . /run/secrets/imagebuild-mirror; {END} pip install x && \\\n"
        "    apt-get install -y git\n"
    )
    assert rewrite(out, SITE, plain=False) == out
    assert "pypi.site" not in out and "apt.site" not in out
    assert "PIP_INDEX_URL=http://pypi.site/simple" in (run_settings(SITE) or "")


def test_the_site_image_of_the_issue_now_downloads_through_the_mirror() -> None:
    """The file a new user tried: apt, pip and mamba on their default upstreams were left alone."""
    text = (OURS / "site-aiidalab.Dockerfile").read_text()
    out = rewrite(text, PROFILES["tuna"])
    assert out != text
    runs = [" ".join(words) for keyword, _, words in dockerfile_instructions(out) if keyword == "RUN"]
    assert len(runs) == 5 and all("pypi.tuna.tsinghua.edu.cn" in run and "APT_CONFIG" in run for run in runs)
    assert all("mirrors.tuna.tsinghua.edu.cn/anaconda" in run for run in runs)  # conda/mamba's channels
    assert "FROM ${BASE_CONTAINER}" in out and "docker.io" not in text


@pytest.mark.parametrize(
    ("dockerfile", "routed_lines"),
    [
        ("FROM python:3.12 AS build\nRUN pip install x\nFROM scratch\nCOPY --from=build /x /x\n", [1]),
        ("ARG BASE=debian:bookworm\nFROM ${BASE}\nRUN apt-get update && \\\n    apt-get install -y git\n", [2]),
        ("FROM debian:bookworm\nRUN \\\n    pip install x\n", [2]),
        ("FROM debian:bookworm\nRUN --mount=type=cache,target=/root/.cache pip install x\n", [1]),
        ("FROM debian:bookworm\n# RUN pip install x\nRUN cat <<EOF > /x\npip install y\nEOF\n", [2]),
        ('FROM debian:bookworm\nRUN ["pip", "install", "x"]\n', []),
        ("FROM debian:bookworm\nRUN <<EOF\npip install x\nEOF\n", []),
        ('FROM debian:bookworm\nSHELL ["pwsh", "-c"]\nRUN pip install x\n', []),
        ("# escape=`\nFROM mcr.microsoft.com/windows/servercore\nRUN pip install x\n", []),
        ('FROM debian:bookworm AS base\nSHELL ["/bin/bash", "-c"]\nFROM base\nRUN pip install x\n', [3]),
        ('FROM debian:bookworm AS a\nFROM debian:bookworm AS b\nSHELL ["pwsh", "-c"]\nFROM a\nRUN pip install x\n', [4]),
    ],
)
def test_runs_routed(dockerfile: str, routed_lines: list[int]) -> None:
    out = rewrite(dockerfile, SITE)
    assert rewrite(out, SITE) == out
    lines = out.splitlines()
    assert [index for index, line in enumerate(lines) if BEGIN in line] == routed_lines
    assert [without_run_prefixes(line) for line in lines] == rewrite_file(
        FileKind.DOCKERFILE, dockerfile, SITE.model_copy(update={"pypi": None, "conda": None, "apt": None, "git": {}}), source=Path("D")
    ).splitlines()
    assert "ENV" not in out and "ARG PIP" not in out  # nothing stays in the image's configuration


def test_unrouted_runs_name_their_line() -> None:
    text = 'FROM debian:bookworm\nRUN ["pip", "install", "x"]\nRUN <<EOF\npip install y\nEOF\nRUN pip install z\n'
    problems = unrouted_runs(text, SITE)
    assert [problem.split(":")[0] for problem in problems] == ["line 2", "line 3"]
    assert "exec-form" in problems[0]
    assert unrouted_runs(text, MirrorProfile()) == []  # nothing to route with


def test_copy_from_image_and_from_through_registry() -> None:
    out = rewrite("FROM jupyter/base-notebook\nCOPY --from=busybox:1 /bin/sh /sh\n", SITE)
    assert out == "FROM registry.site/hub/jupyter/base-notebook\nCOPY --from=registry.site/hub/library/busybox:1 /bin/sh /sh\n"


def test_prefix_settings() -> None:
    prefix = run_prefix(SITE)
    assert prefix is not None
    for setting in ("PIP_INDEX_URL=http://pypi.site/simple", "UV_DEFAULT_INDEX=", "PIP_TRUSTED_HOST=pypi.site",
                    "GIT_CONFIG_KEY_0=url.http://git.site/github.com/.insteadOf", "GIT_CONFIG_VALUE_0=https://github.com/",
                    "conda-forge: http://conda.site", "CONDARC=", "MAMBARC=", "APT_CONFIG=", "/dev/shm/"):
        assert setting in prefix
    assert "<<" not in prefix
    assert run_prefix(MirrorProfile()) is None


def test_runtime_profile_keeps_settings_in_each_stage() -> None:
    runtime = SITE.model_copy(update={"runtime": True})
    text = "FROM debian:bookworm AS base\nRUN pip install x\nFROM scratch\nCOPY --from=base /x /x\nFROM base\n"
    out = rewrite(text, runtime)
    assert rewrite(out, runtime) == out
    lines = out.splitlines()
    kept = [index for index, line in enumerate(lines) if line.startswith("ENV ")]
    assert len(kept) == 2 and lines[kept[0] - 2].startswith("FROM registry.site/hub/library/debian")
    assert 'GIT_CONFIG_VALUE_0="https://github.com/"' in lines[kept[0]]
    assert 'PIP_INDEX_URL="http://pypi.site/simple"' in lines[kept[0]] and "CONDARC=" in lines[kept[0]]
    assert "  conda-forge: http://conda.site" in lines
    assert [keyword for keyword, _, _ in dockerfile_instructions(out)] == [
        "FROM", "ENV", "COPY", "RUN", "FROM", "COPY", "FROM", "ENV", "COPY"
    ]
    assert "ENV" not in rewrite(text, SITE)


@pytest.mark.parametrize(("strict", "code"), [(False, 0), (True, 2)])
def test_cli_warns_or_fails_on_unrouted_run(strict: bool, code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "images" / "base").mkdir(parents=True)
    (tmp_path / "images" / "base" / "image.toml").write_text('root = "debian:bookworm"\n')
    (tmp_path / "mirrors").mkdir()
    (tmp_path / "mirrors" / "tuna.toml").write_text((ROOT / "mirrors" / "tuna.toml").read_text())
    dockerfile = tmp_path / "Dockerfile"
    text = 'FROM debian:bookworm\nRUN ["pip", "install", "x"]\nRUN pip install y\n'
    dockerfile.write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IMAGEBUILD_MIRROR", raising=False)
    args = ["mirror", "rewrite", "Dockerfile", "--mirror", "tuna", "--in-place", *(["--strict"] if strict else [])]
    result = CliRunner().invoke(app, args)
    error = result.exception
    assert (error.exit_code if isinstance(error, ImagebuildError) else result.exit_code) == code
    message = error.render() if isinstance(error, ImagebuildError) else result.output
    assert "Dockerfile" in message and "line 2: an exec-form RUN" in message
    assert (dockerfile.read_text() == text) is strict  # --strict writes nothing


def test_a_second_profile_replaces_the_first_prefix() -> None:
    text = "FROM debian:bookworm\nRUN pip install x && \\\n    apt-get install -y git\n"
    other = MirrorProfile.model_validate({"pypi": {"index_url": "http://other.site/simple"}})
    first = SITE.model_copy(update={"registry": {}})
    assert rewrite(rewrite(text, first), other) == rewrite(text, other)
