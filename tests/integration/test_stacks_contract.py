"""The jupyter/docker-stacks runtime contract, without docker-stacks: each behaviour their images
promise (start.sh as root or as a user, NB_USER/NB_UID/NB_GID, CHOWN_*, GRANT_SUDO, NB_UMASK,
JUPYTER_ENV_VARS_TO_UNSET, the hooks, the log format, start-notebook.py, the HEALTHCHECK, tini,
the kernelspec, a group-writable environment) in a container of its own, on base; the children
keep it, and their Python packages are compiled at build time."""

import base64
import io
import time
import zipfile

import pytest
import requests

from imagebuild import pipeline
from tests.conftest import free_port, host_trust, run_config
from tests.integration.conftest import QUIET, WAIT_FOR_AIIDA

pytestmark = pytest.mark.engine

LABEL = {"io.imagebuild.test": "stacks-contract"}
ROOT_AS = {"user": "root"}


@pytest.fixture(scope="module")
def base(base_build) -> str:
    return base_build.ref


@pytest.fixture(scope="module")
def science(engine, repo_project, base_build) -> dict[str, str]:
    """aiidalab and pyiron as built (and smoke-tested) from the recipes; reused when unchanged."""
    outcomes = pipeline.build(run_config(repo_project, host_trust(), offline=False), ["aiidalab", "pyiron"], reporter=QUIET)
    return {o.name: o.ref for o in outcomes}


def run(engine, image: str, command, **options) -> tuple[int, str, str]:
    """Run to the end through the image's entrypoint: exit status, stdout, stderr."""
    container = engine.client.containers.run(image, command, detach=True, labels=LABEL, **options)
    try:
        status = container.wait(timeout=120)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return status, out, err


@pytest.fixture
def started(engine):
    """Start containers detached; all removed after the test."""
    containers = []

    def start(image: str, command=None, **options):
        container = engine.client.containers.run(image, command, detach=True, labels=LABEL, **options)
        containers.append(container)
        return container

    yield start
    for container in containers:
        container.remove(force=True)


def wait_for(predicate, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(1)
    raise AssertionError(f"{what} not reached within {timeout} s")


def shell(container, command: str, user: str | None = None) -> str:
    code, output = container.exec_run(["bash", "-c", command], user=user or "")
    assert code == 0, output.decode(errors="replace")
    return output.decode(errors="replace").strip()


def probe_wheel() -> bytes:
    """A minimal pure-Python wheel, so `pip install` needs no network."""
    files = {
        "stacks_probe.py": "VALUE = 42\n",
        "stacks_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: stacks-probe\nVersion: 1.0\n",
        "stacks_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "stacks_probe-1.0.dist-info/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in {**files, "stacks_probe-1.0.dist-info/RECORD": record}.items():
            archive.writestr(name, text)
    return buffer.getvalue()


# --- start.sh --------------------------------------------------------------------------------


def test_tini_is_pid_1_and_start_sh_runs_the_command(engine, base):
    status, out, err = run(engine, base, ["bash", "-c", "cat /proc/1/comm; id -un"])
    assert status == 0, err
    assert out.split() == ["tini", "jovyan"]
    assert "Entered start.sh with args: bash" in err and "Executing the command: bash" in err


def test_log_format_goes_to_stderr_and_quiet_hides_info(engine, base):
    status, out, err = run(engine, base, ["echo", "done"], **ROOT_AS, environment={"NB_USER": "root", "NB_UID": "0", "NB_GID": "0"})
    assert status == 0 and out.strip() == "done", err
    assert any(line.startswith("INFO[") and "] Entered start.sh" in line for line in err.splitlines()), err
    assert "Running as root: echo done" in err
    _, _, quiet = run(engine, base, ["true"], environment={"JUPYTER_DOCKER_STACKS_QUIET": "1", "GRANT_SUDO": "yes"})
    assert "INFO[" not in quiet
    assert quiet.startswith("WARNING[") and "must be started as root to grant sudo" in quiet


def test_root_start_renames_the_user_changes_its_ids_and_moves_its_home(engine, base):
    environment = {"NB_USER": "alice", "NB_UID": "1010", "NB_GID": "1020", "NB_GROUP": "lab"}
    status, out, err = run(engine, base, ["bash", "-c", "id; echo HOME=$HOME; pwd; stat -c '%u:%g' ~/.bashrc ~/work"], **ROOT_AS, environment=environment)
    assert status == 0, err
    assert "uid=1010(alice) gid=1020(lab) groups=1020(lab),100(users)" in out
    assert "HOME=/home/alice\n/home/alice\n" in out
    assert out.strip().endswith("1000:100\n1000:100")  # a copy of the image user's home, ownership kept
    assert "username: jovyan       -> alice" in err


def test_chown_home_and_chown_extra(engine, base):
    environment = {
        "NB_USER": "kitten", "NB_UID": "1010", "NB_GID": "101", "CHOWN_HOME": "yes", "CHOWN_HOME_OPTS": "-R",
        "CHOWN_EXTRA": "/srv/a,/srv/b", "CHOWN_EXTRA_OPTS": "-R",
    }
    command = ["bash", "-c", "stat -c '%n %u:%g' /home/kitten /home/kitten/.bashrc /srv/a/f /srv/b"]
    container = engine.client.containers.create(base, command, **ROOT_AS, environment=environment, labels=LABEL)
    try:
        container.put_archive("/", _tar({"srv/a/f": b"x", "srv/b/g": b"y"}))
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0
        out = container.logs(stdout=True, stderr=False).decode()
    finally:
        container.remove(force=True)
    assert out.split("\n")[:4] == ["/home/kitten 1010:101", "/home/kitten/.bashrc 1010:101", "/srv/a/f 1010:101", "/srv/b 1010:101"]


def _tar(files: dict[str, bytes]) -> bytes:
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_grant_sudo_with_a_secure_path_that_keeps_the_venv_first(engine, base):
    command = ["bash", "-c", "sudo id -u; sudo sh -c 'echo $PATH'; sudo which python"]
    status, out, err = run(engine, base, command, **ROOT_AS, environment={"GRANT_SUDO": "yes"})
    assert status == 0, err
    uid, path, python = out.split()
    assert uid == "0"
    assert path.startswith("/opt/venv/bin:")
    assert python == "/opt/venv/bin/python"


def test_nb_umask_is_the_servers(started, base):
    container = started(base, environment={"NB_UMASK": "002"})
    wait_for(lambda: (container.reload(), container.health == "healthy")[1], what="healthy server")
    umask = shell(container, "grep Umask /proc/$(pgrep -f jupyter-lab | head -n 1)/status")
    assert umask.split() == ["Umask:", "0002"]


@pytest.mark.parametrize("as_root", [False, True])
def test_jupyter_env_vars_to_unset(engine, base, as_root):
    environment = {"JUPYTER_ENV_VARS_TO_UNSET": "SECRET_A,SECRET_B", "SECRET_A": "a", "SECRET_B": "b", "KEPT": "k"}
    options = ROOT_AS if as_root else {}
    status, out, err = run(engine, base, ["bash", "-c", "echo ${KEPT}-${SECRET_A:-gone}-${SECRET_B:-gone}-${JUPYTER_ENV_VARS_TO_UNSET:-gone}"], environment=environment, **options)
    assert status == 0, err
    assert out.strip() == "k-gone-gone-gone"


def test_unknown_uid_gets_a_passwd_entry(engine, base):
    status, out, err = run(engine, base, ["id"], user="1010:0")
    assert status == 0, err
    assert "uid=1010(jovyan) gid=0(root)" in out
    assert "--group-add=users" in err  # the home is not writable without the users group


HOOKS = """
mkdir -p /tmp/hooks && cd /tmp/hooks
printf 'export SOURCED=yes\\necho sourced $SOURCED\\n' > 10-export.sh
printf '#!/bin/bash\\necho ran as $(id -u), SOURCED=${SOURCED:-unset}\\n' > 20-run && chmod +x 20-run
printf '#!/bin/bash\\nexit 3\\n' > 30-fails && chmod +x 30-fails
printf 'echo not run\\n' > 40-plain
source /usr/local/bin/run-hooks.sh /tmp/hooks
echo after SOURCED=$SOURCED
"""


def test_hooks_source_sh_files_run_executables_and_report_failures(engine, base):
    status, out, err = run(engine, base, ["bash", "-c", HOOKS])
    assert status == 0, err
    assert out.split("\n")[:3] == ["sourced yes", "ran as 1000, SOURCED=yes", "after SOURCED=yes"]
    assert "/tmp/hooks/30-fails has failed, continuing execution" in err
    assert any(line.startswith("ERROR[") for line in err.splitlines())
    assert "Ignoring non-executable: /tmp/hooks/40-plain" in err


def test_before_notebook_hooks_run_as_root_when_started_as_root(engine, base):
    command = ["bash", "-c", "echo $HOOK_USER"]
    container = engine.client.containers.create(base, command, **ROOT_AS, labels=LABEL)
    try:
        container.put_archive("/usr/local/bin/before-notebook.d", _tar({"50-probe.sh": b"export HOOK_USER=$(id -un)\n"}))
        container.start()
        assert container.wait(timeout=60)["StatusCode"] == 0
        assert container.logs(stdout=True, stderr=False).decode().strip() == "root"
    finally:
        container.remove(force=True)


# --- the server --------------------------------------------------------------------------------


def _answers(url: str, **options) -> bool:
    try:
        return requests.get(url, timeout=3, **options).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("command", ["lab", "notebook", "server"])
def test_start_notebook_serves_on_jupyter_port_with_the_chosen_command(started, base, command):
    port = free_port()
    container = started(
        base, ["start-notebook.py", "--IdentityProvider.token="], ports={"9999/tcp": ("127.0.0.1", port)},
        environment={"JUPYTER_PORT": "9999", "DOCKER_STACKS_JUPYTER_CMD": command},
    )
    wait_for(lambda: _answers(f"http://127.0.0.1:{port}/api"), what=f"jupyter {command} on JUPYTER_PORT")
    assert f"Executing: jupyter {command}" in container.logs().decode()


def test_gen_cert_serves_https(started, base):
    port = free_port()
    started(base, environment={"GEN_CERT": "yes"}, ports={"8888/tcp": ("127.0.0.1", port)})
    wait_for(lambda: _answers(f"https://127.0.0.1:{port}/api", verify=False), what="HTTPS server")
    assert not _answers(f"http://127.0.0.1:{port}/api")


def test_under_a_hub_the_default_command_is_the_single_user_server(started, base):
    container = started(base, environment={"JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:1"})
    wait_for(lambda: "Executing: jupyterhub-singleuser" in container.logs().decode(), timeout=30, what="single-user server")


def test_healthcheck_turns_healthy_and_restartable_keeps_the_server(started, base):
    container = started(base, environment={"RESTARTABLE": "yes"})
    wait_for(lambda: (container.reload(), container.health == "healthy")[1], what="healthy")
    assert "Executing: run-one-constantly jupyter lab" in container.logs().decode()


def test_python3_kernelspec(engine, base):
    status, out, err = run(engine, base, ["jupyter", "kernelspec", "list"])
    assert status == 0, err
    assert any(line.split()[:1] == ["python3"] and "/kernels/" in line for line in out.splitlines()), out


def test_a_changed_uid_can_pip_install_into_the_venv(engine, base):
    wheel = base64.b64encode(probe_wheel()).decode()
    command = (
        f"echo {wheel} | base64 -d > /tmp/stacks_probe-1.0-py3-none-any.whl"
        " && pip install --no-index --quiet /tmp/stacks_probe-1.0-py3-none-any.whl"
        " && python -c 'import stacks_probe; print(stacks_probe.VALUE, stacks_probe.__file__)' && id -u"
    )
    status, out, err = run(engine, base, ["bash", "-c", command], **ROOT_AS, environment={"NB_UID": "1010"}, network_mode="none")
    assert status == 0, err
    assert out.split() == ["42", "/opt/venv/lib/python3.11/site-packages/stacks_probe.py", "1010"]


# --- every image -------------------------------------------------------------------------------

COMPILED = """
import sys
from pathlib import Path
site = Path(sys.argv[1])
tag = sys.implementation.cache_tag
modules = list(site.rglob("*.py"))
compiled = sum((p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc").is_file() for p in modules)
print(compiled, len(modules))
"""


def _image(name: str, base: str, science: dict[str, str]) -> str:
    return base if name == "base" else science[name]


@pytest.fixture
def science_or_none(request, name):
    return request.getfixturevalue("science") if name != "base" else {}


@pytest.mark.parametrize("name", ["base", "aiidalab", "pyiron"])
def test_site_packages_are_compiled_at_build_time(engine, base, science_or_none, name):
    image = _image(name, base, science_or_none)
    output = engine.client.containers.run(
        image, ["python", "-c", COMPILED, "/opt/venv/lib/python3.11/site-packages"], remove=True, network_mode="none", labels=LABEL
    )
    compiled, modules = map(int, output.decode().split())
    assert modules > 1000 and compiled >= 0.95 * modules, (compiled, modules)


@pytest.mark.parametrize("name", ["aiidalab", "pyiron"])
def test_children_keep_the_root_start(engine, base, science_or_none, name):
    image = _image(name, base, science_or_none)
    environment = {"NB_USER": "bob", "NB_UID": "1011", "GRANT_SUDO": "yes"}
    status, out, err = run(engine, image, ["bash", "-c", "cat /proc/1/comm; id -un; id -u; pwd; sudo which python"], **ROOT_AS, environment=environment)
    assert status == 0, err
    assert out.split() == ["tini", "bob", "1011", "/home/bob", "/opt/venv/bin/python"]


def test_aiidalab_started_as_root_runs_its_services_as_nb_user(started, science):
    environment = {"NB_USER": "alice", "NB_UID": "1010", "AIIDA_SERVICES": "always"}
    container = started(science["aiidalab"], ["sleep", "infinity"], **ROOT_AS, environment=environment)
    wait_for(lambda: "Running as alice" in container.logs().decode(), timeout=120, what="start.sh done")
    # docker exec starts from the image's environment (HOME=/home/jovyan), not the one start.sh
    # and the hooks made: it still finds alice's profile, and leaves no AiiDA folder of its own
    code, output = container.exec_run(["python", "-c", WAIT_FOR_AIIDA + "print('READY', orm.User.collection.get_default().email)"], user="alice")
    assert code == 0 and "READY" in output.decode(), output.decode() + container.logs().decode()[-3000:]
    owners = shell(container, "stat -c '%U %u' /home/alice/.aiida-services /home/alice/.aiida-services/postgresql/data /home/alice/.aiida")
    assert owners.split("\n") == ["alice 1010"] * 3
    links = shell(container, "readlink /home/jovyan/.aiida /home/jovyan/.aiida-services")
    assert links.split("\n") == ["/home/alice/.aiida", "/home/alice/.aiida-services"]
    processes = shell(container, "ps -o user= -C postgres,beam.smp | sort -u")
    assert processes == "alice"


def test_aiidalab_one_shot_command_starts_no_services(engine, science):
    """`docker run IMAGE COMMAND` that is no Jupyter server starts neither PostgreSQL nor RabbitMQ."""
    status, out, err = run(engine, science["aiidalab"], ["bash", "-c", "ls -A ~; ps -o comm= -C postgres,beam.smp | wc -l"], network_mode="none")
    assert status == 0, err
    assert "is no Jupyter server: AiiDA's services are not started" in err, err
    assert ".aiida-services" not in out.split() and out.split()[-1] == "0", out


# In a kernel like the one a notebook gets: whether the start hook was still preparing AiiDA when
# the kernel started, then `load_profile()` twice, each cell's status and what it showed.
FIRST_KERNEL = """
import os, sys
from pathlib import Path
from jupyter_client.manager import start_new_kernel

pending = Path(f"/tmp/aiida-prepare-{os.getuid()}.pending")
manager, client = start_new_kernel(kernel_name="python3", startup_timeout=600)
print("PENDING", pending.exists())
for cell in ("first", "again"):
    msg_id = client.execute("from aiida import load_profile; print('PROFILE', load_profile().name)")
    shown = []
    while True:
        message = client.get_iopub_msg(timeout=900)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            shown.append(content["text"])
        elif kind in ("display_data", "update_display_data"):
            shown.append(content["data"].get("text/html", ""))
        elif kind == "error":
            shown.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            break
    reply = client.get_shell_msg(timeout=60)
    print(cell.upper(), reply["content"]["status"], " ".join(shown).replace("\\n", " "))
manager.shutdown_kernel(now=True)
"""


def test_aiidalab_first_kernel_waits_for_the_profile_under_cpu_contention(started, science):
    """A first start on half a core: a kernel started while the profile is still being made gets
    it in its first cell (which says AiiDA is being set up) and again in the same kernel."""
    container = started(science["aiidalab"], network_mode="none", nano_cpus=500_000_000)
    deadline = time.monotonic() + 300
    while container.exec_run(["test", "-e", "/tmp/aiida-prepare-1000.pending"]).exit_code != 0:
        assert time.monotonic() < deadline, container.logs().decode(errors="replace")[-3000:]
        time.sleep(0.2)
    code, output = container.exec_run(["python", "-c", FIRST_KERNEL], user="jovyan")
    lines = output.decode(errors="replace")
    assert code == 0, lines + container.logs().decode(errors="replace")[-3000:]
    assert "PENDING True" in lines, f"the profile was ready before the kernel started, so nothing raced:\n{lines}"
    first = next(line for line in lines.splitlines() if line.startswith("FIRST "))
    again = next(line for line in lines.splitlines() if line.startswith("AGAIN "))
    assert first.startswith("FIRST ok") and "Setting up AiiDA" in first and "PROFILE default" in first, lines
    assert again.startswith("AGAIN ok") and "PROFILE default" in again, lines
