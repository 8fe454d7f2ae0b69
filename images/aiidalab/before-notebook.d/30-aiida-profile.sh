#!/bin/bash
# Make AiiDA ready to run calculations on every start, using the services 20-aiida-services.sh
# started. First start: a profile on PostgreSQL and RabbitMQ (`verdi presto`, after waiting for
# the broker to boot), the `localhost` computer (direct scheduler), and default AiiDAlab apps
# ($AIIDALAB_DEFAULT_APPS, if any). Every start: the storage migrated if an image update needs
# it, the localhost computer's MPI process count set to the CPUs this container may use now,
# Quantum ESPRESSO's programs registered as codes when aiida-quantumespresso is installed
# ($AIIDA_QE_CODES: LABEL:PROGRAM words, default pw:pw, i.e. pw.x as pw@localhost), and the daemon
# started as soon as the broker answers (its log: $AIIDA_SERVICES_DIR/daemon-start.log).
# The command (the server) waits for this only when the image's aiida-core differs from the one
# an existing profile was last prepared with (a migration may be due); otherwise, the first
# start's profile creation included (it needs the broker, which takes seconds to boot), it runs
# in the background: a kernel's first cell waits for it, and so does `verdi status`. A profile the user
# made is used as it is. A failure never blocks the server.
# Safe to execute or to source: the work runs in a subshell. Messages go to stderr (stdout is
# the command's). As root, it runs as NB_USER (10-aiida-user.sh).
if declare -F aiida_services_wanted >/dev/null && ! aiida_services_wanted; then
    :  # no server, no services (20-aiida-services.sh said so)
elif [ "$(id -u)" = 0 ] && declare -F aiida_as_user >/dev/null; then
    aiida_as_user "${BASH_SOURCE[0]}" || true
else (
    services="${AIIDA_SERVICES_DIR:-$HOME/.aiida-services}"
    read -r -d '' prepare <<'PY' || true
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from importlib.metadata import entry_points, version
from pathlib import Path

import psutil
from aiida import load_profile, orm
from aiida.common.exceptions import NotExistent
from aiida.engine.daemon.client import get_daemon_client
from aiida.manage.configuration import get_config, reset_config

warnings.filterwarnings("ignore", message="Creating AiiDA configuration folder")

SERVICES = Path(os.environ.get("AIIDA_SERVICES_DIR") or Path.home() / ".aiida-services")
PROFILE = os.environ.get("AIIDA_PROFILE_NAME", "default")
POSTGRES_PORT = int(os.environ.get("AIIDA_POSTGRES_PORT", "5432"))
BROKER_PORT = int(os.environ.get("AIIDA_BROKER_PORT", "5672"))
BROKER_WAIT = 300  # seconds RabbitMQ may take to boot
QE_VERSION = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "quantum-espresso"], capture_output=True, text=True).stdout


def say(message: str) -> None:
    print(f"30-aiida-profile.sh: {message}", file=sys.stderr, flush=True)


def container_cpus() -> int:
    """The CPUs this container may use now: its CPU set, capped by a CPU quota (docker --cpus)
    from cgroup v2 or v1. Read at every start, so a hub that changes the limit is followed."""
    cpus = len(os.sched_getaffinity(0))
    quota_files = [("/sys/fs/cgroup/cpu.max", None), ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")]
    for quota_file, period_file in quota_files:
        try:
            words = Path(quota_file).read_text().split()
            quota, period = (words[0], words[1]) if period_file is None else (words[0], Path(period_file).read_text())
        except (OSError, IndexError):
            continue
        if quota not in ("max", "-1"):
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
        break
    return cpus


def broker_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", BROKER_PORT), timeout=1).close()
    except OSError:
        return False
    return True


def daemon_running(profile_name: str) -> bool:
    """Whether this container runs the profile's daemon: its PID file names a live circus process
    (the PID file of a previous container may name an unrelated process of this one)."""
    pid = get_daemon_client(profile_name).get_daemon_pid()
    try:
        return pid is not None and any(word in psutil.Process(pid).cmdline() for word in ("start-circus", "circusd"))
    except psutil.Error:
        return False


def follow_service_ports(config) -> None:
    """Point the default profile at this start's service ports, when it uses this image's services
    (on 127.0.0.1) and they moved: a hub on the host network hands out new ports at each spawn."""
    profile = config.get_profile(config.default_profile_name)
    storage, broker = dict(profile.storage_config), dict(profile.process_control_config)
    if profile.storage_backend != "core.psql_dos" or storage.get("database_hostname") != "127.0.0.1":
        return
    if storage.get("database_port") == POSTGRES_PORT and broker.get("broker_port", BROKER_PORT) == BROKER_PORT:
        return
    profile.set_storage(profile.storage_backend, {**storage, "database_port": POSTGRES_PORT})
    if profile.process_control_backend == "core.rabbitmq":
        profile.set_process_controller(profile.process_control_backend, {**broker, "broker_port": BROKER_PORT})
    config.update_profile(profile)
    config.store()
    say(f"profile '{profile.name}' follows the services to ports {POSTGRES_PORT} and {BROKER_PORT}")


def create_profile() -> None:
    deadline = time.monotonic() + BROKER_WAIT
    while not broker_answers():
        if time.monotonic() > deadline:
            sys.exit(f"RabbitMQ did not answer on 127.0.0.1:{BROKER_PORT} within {BROKER_WAIT} s")
        time.sleep(0.2)
    password = (SERVICES / "postgresql" / "superuser-password").read_text().strip()
    command = [
        "verdi", "presto", "--profile-name", PROFILE, "--email", os.environ.get("AIIDA_USER_EMAIL", "aiida@localhost"),
        "--use-postgres", "--postgres-hostname", "127.0.0.1", "--postgres-port", str(POSTGRES_PORT),
        "--postgres-username", "postgres", "--postgres-password", password,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or "RabbitMQ server detected" not in done.stdout:
        sys.exit(f"verdi presto did not create a PostgreSQL/RabbitMQ profile:\n{done.stdout}{done.stderr}")
    say(f"created AiiDA profile '{PROFILE}' (PostgreSQL, RabbitMQ) and computer localhost")


first_start = not get_config(create=True).profile_names
if first_start:
    create_profile()
    reset_config()  # re-read the configuration verdi presto wrote
    config = get_config()
    # RabbitMQ's consumer timeout is disabled (20-aiida-services.sh), so the version warning
    # aiida-core prints for RabbitMQ >= 3.8.15 does not apply.
    config.set_option("warnings.rabbitmq_version", False, scope=PROFILE)
    config.store()

follow_service_ports(get_config())
profile = load_profile(allow_switch=True)
storage = profile.storage_cls
if storage.version_profile(profile) != storage.version_head():
    say(f"migrating the storage of profile '{profile.name}' to this image's aiida-core")
    storage.migrate(profile)

try:
    computer = orm.Computer.collection.get(label="localhost")
except NotExistent:  # a profile the user made may have none
    computer = None
if computer is not None:
    cpus = container_cpus()
    if computer.get_default_mpiprocs_per_machine() != cpus:
        computer.set_default_mpiprocs_per_machine(cpus)
        say(f"localhost runs MPI jobs on {cpus} processes")
    for label, program in (word.partition(":")[::2] for word in os.environ.get("AIIDA_QE_CODES", "pw:pw").split()):
        executable = shutil.which(f"{program}.x")
        if not executable or not entry_points(group="aiida.calculations", name=f"quantumespresso.{program}"):
            continue
        codes = orm.QueryBuilder().append(orm.Computer, filters={"id": computer.pk}, tag="computer")
        codes.append(orm.InstalledCode, with_computer="computer", filters={"label": label})
        if codes.count() == 0:
            orm.InstalledCode(
                label=label, computer=computer, filepath_executable=executable,
                default_calc_job_plugin=f"quantumespresso.{program}",
                description=f"Quantum ESPRESSO {program}.x {QE_VERSION} from the image",
            ).store()
            say(f"registered {executable} as code {label}@localhost")

apps = os.environ.get("AIIDALAB_DEFAULT_APPS", "").split()
if first_start and apps:
    installed = subprocess.run(["aiidalab", "install", "--yes", *apps], capture_output=True, text=True)
    if installed.returncode != 0:
        print(installed.stdout + installed.stderr, file=sys.stderr)
        say(f"WARNING: installing the default AiiDAlab apps {apps} failed; install them from the app store")

if profile.process_control_backend and not daemon_running(profile.name):
    # A PID file left by the previous container is stale; `verdi daemon start` removes it.
    waiting = f"for i in $(seq {BROKER_WAIT * 5}); do (exec 3<>/dev/tcp/127.0.0.1/{BROKER_PORT}) 2>/dev/null && break; sleep 0.2; done"
    workers = os.environ.get("AIIDA_DAEMON_WORKERS", "1")
    log = (SERVICES / "daemon-start.log").open("a")
    subprocess.Popen(
        ["bash", "-c", f"{waiting}; exec verdi -p {profile.name} daemon start {workers}"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    say(f"the AiiDA daemon of profile '{profile.name}' starts once RabbitMQ answers")

(SERVICES / "prepared-for-aiida-core").write_text(version("aiida-core"))
PY
    warning="30-aiida-profile.sh: WARNING: AiiDA is not ready (see above); the server starts anyway"
    # `python`, the interpreter verdi runs with, so `verdi status` sees the daemon as its own
    installed="$(python -c 'from importlib.metadata import version; print(version("aiida-core"))')"
    config="${AIIDA_PATH:-$HOME}/.aiida/config.json"
    prepared="$(cat "$services/prepared-for-aiida-core" 2>/dev/null)"
    if [ -f "$config" ] && [ "$prepared" != "$installed" ]; then
        # another aiida-core prepared this profile: a migration may be due before anything uses it
        python -c "$prepare" || echo "$warning" >&2
    else
        if [ -f "$config" ]; then
            echo "30-aiida-profile.sh: AiiDA was prepared for aiida-core $installed before; checking it in the background" >&2
        else
            echo "30-aiida-profile.sh: creating the AiiDA profile in the background (the command does not wait for it)" >&2
        fi
        # Until this is done, a kernel's first cell waits (aiida-first-start.py, an IPython
        # startup file): a kernel that read the configuration before the profile was in it would
        # keep failing to load it.
        pending="/tmp/aiida-prepare-$(id -u).pending"
        touch "$pending"
        { python -c "$prepare" || echo "$warning" >&2; rm -f "$pending"; } &
    fi
) fi
