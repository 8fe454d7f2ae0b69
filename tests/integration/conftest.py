"""Real engine fixtures: the engine is started if needed, images are built once per session
and shared by every test (a rebuild of an unchanged image is a content-hash lookup)."""

import datetime
import io
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imagebuild import engine as engine_module
from imagebuild import pipeline
from imagebuild.ca import read_ca_bundle
from imagebuild.context import IMAGE_LABEL
from imagebuild.plan import Project, load_project, plan
from tests.conftest import REPO, offline_fetcher

pytestmark = pytest.mark.engine

QUIET = pipeline.Reporter(say=print, step=lambda _line: None)


@dataclass(frozen=True)
class TestCa:
    """A CA made for this session: its PEM, a line of it to search for, and bundles using it."""

    pem: bytes
    marker: bytes
    trusted_bundle: bytes  # the host's bundle plus this CA: builds can reach PyPI
    alone: bytes  # only this CA: HTTPS to PyPI must fail


def _make_ca() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"imagebuild test CA {secrets.token_hex(4)}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def engine() -> Iterator[engine_module.Engine]:
    """The real engine; images of throwaway test recipes (named test-*) are removed afterwards."""
    engine_module.up(print)
    connected = engine_module.Engine()
    yield connected
    for image in connected.images_with_label(IMAGE_LABEL):
        if image.labels[IMAGE_LABEL].startswith("test-"):
            connected.client.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def test_ca() -> TestCa:
    pem = _make_ca()
    host_bytes = read_ca_bundle() or b""
    body = pem.decode().splitlines()
    return TestCa(pem=pem, marker=body[len(body) // 2].encode(), trusted_bundle=host_bytes + b"\n" + pem, alone=pem)


@pytest.fixture(scope="session")
def repo_project() -> Project:
    return load_project(REPO)


@pytest.fixture(scope="session")
def base_build(engine, repo_project) -> pipeline.ImageOutcome:
    (outcome,) = pipeline.build(repo_project, ["base"], fetcher=offline_fetcher(read_ca_bundle(), offline=False), reporter=QUIET)
    return outcome


def imagebuild_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["imagebuild", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=1800)


def smoke_of(project: Project, engine: engine_module.Engine, outcome: pipeline.ImageOutcome) -> pipeline.SmokeResult:
    """The smoke result of this run's build, or a fresh smoke run when the engine already held a
    smoke-tested image (a warm engine), so every session really executes the notebooks."""
    if outcome.smoke is not None:
        return outcome.smoke
    item = next(p for p in plan(project, [outcome.name]) if p.name == outcome.name)
    return pipeline.smoke_image(project, engine, item, outcome.ref, [], QUIET)


def saved_image_blobs(engine, ref: str) -> list[bytes]:
    """Every file of `docker save`: manifest, config and each layer's files."""
    saved = b"".join(engine.client.images.get(ref).save(named=True))
    blobs = []
    with tarfile.open(fileobj=io.BytesIO(saved)) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            data = archive.extractfile(member).read()
            blobs.append(data)
            if member.name.endswith("layer.tar"):
                with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                    blobs += [layer.extractfile(m).read() for m in layer.getmembers() if m.isfile()]
    return blobs
