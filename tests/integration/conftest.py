"""Real engine fixtures: the engine is started if needed, images are built once per session
and shared by every test (a rebuild of an unchanged image is a content-hash lookup)."""

import contextlib
import datetime
import gzip
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imagebuild import pipeline
from imagebuild.build import engine as engine_module
from imagebuild.build import host
from imagebuild.build.context import IMAGE_LABEL
from imagebuild.build.smoke import SmokeResult
from imagebuild.model.project import Project, load_project
from imagebuild.plan import plan
from imagebuild.publish import registry as registry_module
from imagebuild.runs import ImageOutcome, Reporter
from imagebuild.smoketest import smoke_image
from imagebuild.system import apt_install, cache_dir
from tests.conftest import REPO, free_port, host_trust, run_config
from tests.hub_browser import HubPerson, chromium
from tests.integration.mirrored import MirroredSite, make_site


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in tests/integration drives the real engine (or downloads from PyPI): marked
    `engine`, so `pytest -m "not engine"` runs exactly the unit tests."""
    for item in items:
        if Path(__file__).parent in item.path.parents:
            item.add_marker(pytest.mark.engine)

QUIET = Reporter(say=print, step=lambda _line: None)


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
    host.up(print, cache_dir(os.environ), os.environ)
    connected = engine_module.Engine()
    yield connected
    for image in connected.images_with_label(IMAGE_LABEL):
        if image.labels[IMAGE_LABEL].startswith("test-"):
            connected.client.images.remove(image.id, force=True)


@pytest.fixture(scope="session")
def test_ca() -> TestCa:
    pem = _make_ca()
    host_bytes = host_trust() or b""
    body = pem.decode().splitlines()
    return TestCa(pem=pem, marker=body[len(body) // 2].encode(), trusted_bundle=host_bytes + b"\n" + pem, alone=pem)


# Real PBE pseudopotentials that Debian's quantum-espresso-data ships (SSSP itself, on Materials
# Cloud, cannot be downloaded here); Si's is the SSSP 1.x kind (pslibrary 1.0.0, ultrasoft).
DISTRIBUTION_PSEUDOS = ["Si.pbe-nl-rrkjus_psl.1.0.0.UPF", "C.pbe-rrkjus.UPF", "N.pbe-n-rrkjus_psl.1.0.0.UPF", "O.pbe-rrkjus.UPF"]


@pytest.fixture(scope="session")
def distribution_pseudo_archive(tmp_path_factory) -> Path:
    """An SSSP-style tar.gz of those UPF files, taken from the distribution's package."""
    work = tmp_path_factory.mktemp("qe-data")
    download = ["apt-get", "download", "quantum-espresso-data"]
    if subprocess.run(download, cwd=work, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)  # a fresh machine has no lists
        subprocess.run(download, cwd=work, check=True, capture_output=True)
    (deb,) = work.glob("quantum-espresso-data_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "root")], check=True)
    archive = work / "SSSP_1.3.0_PBE_efficiency.tar.gz"
    # The same bytes every session (no gzip timestamp; the files keep the package's times), so
    # the image's content hash, and with it the build, is shared between runs.
    with (
        archive.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w") as bundle,
    ):
        for name in DISTRIBUTION_PSEUDOS:
            bundle.add(work / "root" / "usr" / "share" / "espresso" / "pseudo" / name, arcname=name)
    return archive


@pytest.fixture(scope="session")
def repo_project() -> Project:
    return load_project(REPO)


@pytest.fixture(scope="session")
def base_build(engine, repo_project) -> ImageOutcome:
    (outcome,) = pipeline.build(run_config(repo_project, host_trust(), offline=False), ["base"], reporter=QUIET)
    return outcome


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each phase's report on the test item (`item.rep_call.failed`): fixtures that keep
    artifacts of failures (the browser journey's screenshots) read it."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


SCIENCE = ["aiidalab", "pyiron"]


@pytest.fixture(scope="session")
def built(engine, repo_project) -> dict[str, ImageOutcome]:
    """aiidalab, pyiron, the hub and its database, built and smoke-tested once per session."""
    outcomes = pipeline.build(
        run_config(repo_project, host_trust(), offline=False), [*SCIENCE, "hub", "postgres"], reporter=QUIET
    )
    return {outcome.name: outcome for outcome in outcomes}


@pytest.fixture(scope="session")
def site(tmp_path_factory, engine) -> Iterator[MirroredSite]:
    """Loopback mirrors with their access logs (mirrored.py), for every end-to-end mirror test."""
    yield from make_site(tmp_path_factory, engine)


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> Iterator[str]:
    """Debian's docker-registry on a loopback port of its own, for this session."""
    host = f"127.0.0.1:{free_port()}"
    pid = registry_module.up(host, print, cache_dir(os.environ), storage=tmp_path_factory.mktemp("registry"))
    yield host
    if pid:
        os.kill(pid, signal.SIGTERM)


@pytest.fixture(scope="session")
def published(built, registry) -> dict[str, dict]:
    """aiidalab and pyiron pushed under all their tags (the hub's own images are not: `hub up` must)."""
    pushed = imagebuild_cli("push", *SCIENCE, "--registry", registry, "--json", cwd=REPO)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    return {result["name"]: result for result in json.loads(pushed.stdout)}


def imagebuild_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["imagebuild", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=1800)


def smoke_of(project: Project, engine: engine_module.Engine, outcome: ImageOutcome) -> SmokeResult:
    """The smoke result of this run's build, or a fresh smoke run when the engine already held a
    smoke-tested image (a warm engine), so every session really executes the notebooks."""
    if outcome.smoke is not None:
        return outcome.smoke
    item = next(p for p in plan(project, [outcome.name]) if p.name == outcome.name)
    return smoke_image(project, engine, item, outcome.ref, [], QUIET.say)


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


# Scripts run in an aiidalab container (`aiida_python`). Each first waits (within a limit) until
# `verdi status` is all green: after a start the daemon comes up once RabbitMQ has booted.
WAIT_FOR_AIIDA = """
import subprocess, sys, time
deadline = time.monotonic() + 600  # a busy, slow host boots RabbitMQ slowly
while True:
    status = subprocess.run(["verdi", "status"], capture_output=True, text=True).stdout
    if all(f"✔ {part}:" in status for part in ("profile", "storage", "broker", "daemon")):
        break
    if time.monotonic() > deadline:
        sys.exit("AiiDA not ready:" + status)
    time.sleep(1)
from aiida import load_profile, orm
load_profile()
"""

# A calculation job through the daemon; prints its UUID.
AIIDA_SUBMIT = WAIT_FOR_AIIDA + """
from aiida.engine import submit
code = orm.InstalledCode(label="bash-add", computer=orm.load_computer("localhost"),
                         filepath_executable="/bin/bash", default_calc_job_plugin="core.arithmetic.add").store()
builder = code.get_builder()
builder.x, builder.y = orm.Int(20), orm.Int(22)
node = submit(builder)
while not node.is_terminated:
    time.sleep(1)
assert node.is_finished_ok, node.exit_status
print("UUID", node.uuid)
"""

# The calculation of argv[1] is still there, finished; prints localhost's MPI process count.
AIIDA_CHECK = WAIT_FOR_AIIDA + """
node = orm.load_node(sys.argv[1])
assert node.is_finished_ok and node.outputs.sum.value == 42, node.outputs.sum.value
print("MPIPROCS", orm.load_computer("localhost").get_default_mpiprocs_per_machine())
"""


def aiida_python(container, script: str, *args: str) -> str:
    exit_code, output = container.exec_run(["python", "-c", script, *args], user="jovyan")
    text = output.decode(errors="replace")
    assert exit_code == 0, text + container.logs().decode(errors="replace")[-3000:]
    return text


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's chromium (installed when missing), driven by Playwright."""
    if shutil.which("chromium") is None:
        apt_install(["chromium"], log=cache_dir() / "chromium-install.log")
    with chromium() as launched:
        yield launched


@pytest.fixture
def journeys(browser, request) -> Iterator[list[HubPerson]]:
    """The browser sessions a test opens. At a failure each leaves a screenshot in its module's
    ARTIFACTS folder, which is removed when the test passed."""
    artifacts: Path = request.module.ARTIFACTS
    opened: list[HubPerson] = []
    yield opened
    failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else True
    for journey in opened:
        if failed:
            journey.shot("at-failure")
        journey.close()
    if not failed:
        shutil.rmtree(artifacts, ignore_errors=True)
    else:
        print(f"screenshots of each step: {artifacts}")


def remove_hub_data(engine, name: str) -> None:
    """Everything of hub `name` (an interrupted earlier run leaves it behind): user containers
    (DockerSpawner may be removing them already), services, other containers a test labelled
    io.imagebuild.hub=NAME, network, volumes."""
    for label in (f"io.imagebuild.hub={name}", f"com.docker.compose.project={name}"):
        for container in engine.client.containers.list(all=True, filters={"label": label}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)
    for network in engine.client.networks.list(names=[f"{name}-jupyterhub"]):
        network.remove()
    for volume in engine.client.volumes.list():
        if volume.name.startswith(f"{name}-"):
            volume.remove(force=True)
