"""The engine's side that needs no engine: its errors in imagebuild's family, the records it
answers with, and what smoke makes of a results file."""

import io
import json
import tarfile

import docker.errors
import pytest
import requests

from imagebuild.build.engine import context_tar, engine_errors
from imagebuild.build.records import ContainerInfo
from imagebuild.build.smoke import _results
from imagebuild.errors import EngineError


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (docker.errors.APIError("500 Server Error", explanation="no space left on device"), "the engine answered: no space left on device"),
        (docker.errors.ImageNotFound("404", explanation="No such image: x:1"), "No such image: x:1"),
        (docker.errors.DockerException("Error while fetching server API version"), "Error while fetching server API version"),
        (requests.ConnectionError("Connection aborted."), "the connection to the engine broke"),
        (requests.ReadTimeout("read timed out"), "the connection to the engine broke"),
    ],
)
def test_engine_and_connection_failures_are_engine_errors_naming_the_action(raised, said):
    with pytest.raises(EngineError) as failure, engine_errors("pulling debian:bookworm"):
        raise raised
    assert str(failure.value).startswith("pulling debian:bookworm: ") and said in str(failure.value)
    assert failure.value.__cause__ is None and failure.value.__suppress_context__


def test_imagebuild_errors_pass_through_unchanged():
    with pytest.raises(EngineError, match=r"^mine$"), engine_errors("building"):
        raise EngineError("mine")


def test_a_container_record_reads_the_engines_inspection():
    attrs = {
        "Id": "abc123",
        "Name": "/hub-db",
        "RestartCount": 2,
        "State": {"Status": "running", "Health": {"Status": "healthy"}, "StartedAt": "2026-12-06T23:00:00Z"},
        "Config": {"Image": "postgres:16", "Labels": None, "Env": ["JUPYTERHUB_USER=eve", "NOVALUE", "A=b=c"]},
    }
    info = ContainerInfo.of(attrs)
    assert (info.id, info.name, info.image, info.state, info.health, info.restarts) == ("abc123", "hub-db", "postgres:16", "running", "healthy", 2)
    assert info.labels == {} and info.environment == {"JUPYTERHUB_USER": "eve", "A": "b=c"}


def test_smoke_results_missing_half_written_or_foreign_count_as_none():
    good = [{"owner": "base", "notebook": "a.ipynb", "ok": True, "seconds": 1.5}]
    assert [r.notebook for r in _results(json.dumps(good).encode())] == ["a.ipynb"]
    assert _results(None) == () and _results(b"") == ()
    assert _results(b'[{"owner": "base", "noteb') == ()
    assert _results(b'[{"unexpected": 1}]') == ()


def test_a_dockerfile_folders_context_honours_its_dockerignore(tmp_path):
    (tmp_path / "binder").mkdir()
    (tmp_path / "binder/Dockerfile").write_text("FROM debian:bookworm\n")
    (tmp_path / "kept.txt").write_text("kept")
    (tmp_path / "secret.env").write_text("nope")
    (tmp_path / ".dockerignore").write_text("# comment\n\n*.env\n")
    with tarfile.open(fileobj=io.BytesIO(context_tar(tmp_path, "binder/Dockerfile"))) as archive:
        names = set(archive.getnames())
    assert {"kept.txt", "binder/Dockerfile"} <= names and "secret.env" not in names
