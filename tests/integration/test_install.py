"""The README's install step (`./install.sh`) on a stock Debian: a container of the bootstrapped
root image with only the distribution's python3, so no pip, no ensurepip, and PEP 668's marker."""

import contextlib
import io
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator

import docker.errors
import pytest

from imagebuild.build.rootfs import ensure_root_image
from tests.conftest import REPO, host_trust, run_config

pytestmark = pytest.mark.engine

CA_PATH = "/usr/local/share/host-ca-bundle.pem"


def _tar(files: dict[str, bytes | None]) -> bytes:
    """A tar of `files` (name in the archive -> bytes, or None: the file of that name in REPO)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            if data is None:
                archive.add(REPO / name, arcname=name, recursive=False)  # keeps install.sh executable
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _project_files() -> list[str]:
    """The repository's files as a clone would have them: tracked, plus new ones not ignored yet
    (so an uncommitted install.sh is tested too), without build output or a .venv."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True, capture_output=True, text=True,
    ).stdout.split("\0")
    return sorted({name for name in listed if name and (REPO / name).is_file()})


@pytest.fixture
def debian(engine, repo_project) -> Iterator:
    """A running container of the root image `base` builds on, on host networking, with the
    project in /src and the host's CA bundle trusted by pip; removed afterwards."""
    root = repo_project.recipes["base"].spec.root
    ensure_root_image(engine, root, run_config(repo_project), print)
    bundle = host_trust()
    environment = dict.fromkeys(("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"), CA_PATH) if bundle else {}
    # Ends by itself (and is then removed) should this session be killed before `finally`.
    container = engine.client.containers.run(
        root, ["sleep", "1800"], detach=True, auto_remove=True, network_mode="host", environment=environment,
        name=f"imagebuild-test-install-{secrets.token_hex(4)}",
    )
    try:
        if bundle:
            assert container.put_archive("/", _tar({CA_PATH.lstrip("/"): bundle}))
        assert container.exec_run(["mkdir", "/src"]).exit_code == 0
        assert container.put_archive("/src", _tar(dict.fromkeys(_project_files())))
        yield container
    finally:
        with contextlib.suppress(docker.errors.APIError):  # gone already, or going (auto_remove)
            container.remove(force=True)


def _sh(container, script: str, step: str) -> tuple[int, str]:
    """Run `script` with sh in /src; prints how long it took."""
    started = time.monotonic()
    exit_code, output = container.exec_run(["sh", "-c", script], workdir="/src")
    print(f"{step}: {time.monotonic() - started:.1f} s (exit {exit_code})")
    return exit_code, output.decode(errors="replace")


def test_install_sh_on_stock_debian(debian):
    code, out = _sh(debian, "apt-get update -qq && apt-get install -y -qq --no-install-recommends python3", "apt-get install python3")
    assert code == 0, out[-3000:]

    # The point: this python3 cannot install anything itself, and `python3 -m venv` cannot work yet.
    code, out = _sh(debian, "python3 -m pip --version", "python3 -m pip (before)")
    assert code != 0 and "No module named pip" in out, out
    code, out = _sh(debian, "python3 -c 'import ensurepip'", "import ensurepip (before)")
    assert code != 0, out
    code, out = _sh(
        debian,
        "python3 -c 'import os, sysconfig; print(os.path.isfile(os.path.join(sysconfig.get_path(\"stdlib\"), \"EXTERNALLY-MANAGED\")))'",
        "PEP 668 marker",
    )
    assert out.strip() == "True", out
    assert _sh(debian, "dpkg -s python3-venv", "dpkg -s python3-venv (before)")[0] != 0
    # As on a fresh machine, no package lists: install.sh must fetch them for python3-venv.
    assert _sh(debian, "rm -rf /var/lib/apt/lists/*", "drop apt lists")[0] == 0

    code, out = _sh(debian, "./install.sh", "./install.sh (first run)")
    assert code == 0, out[-5000:]
    assert "installing python3-venv" in out and "install.sh: apt-get update" in out, out[-5000:]
    code, out = _sh(debian, "dpkg-query -W -f '${Status}' python3-venv", "dpkg -s python3-venv (after)")
    assert code == 0 and out.strip() == "install ok installed", out
    code, out = _sh(debian, "/src/.venv/bin/imagebuild --help", "imagebuild --help")
    assert code == 0 and "Usage" in out and "build" in out, out
    code, out = _sh(debian, ".venv/bin/python -c 'import imagebuild; print(imagebuild.__file__)'", "import imagebuild")
    assert code == 0 and out.strip() == "/src/imagebuild/__init__.py", out  # editable: the sources in /src

    code, out = _sh(debian, "./install.sh", "./install.sh (second run)")  # timed above, not asserted
    assert code == 0 and "up to date" in out, out[-3000:]

    # The system python is as it was: still no pip (python3-venv brings pip's wheel, not pip).
    code, out = _sh(debian, "python3 -m pip --version", "python3 -m pip (after)")
    assert code != 0 and "No module named pip" in out, out
