"""Another Docker engine on this machine, as a second CI runner (or a fresh machine) has: its own
data-root, exec-root, socket and bridge. Used by the two-engine matrix test and the benchmarks.

Its own bridge matters: a dockerd started with --bridge=none deletes docker0, the first engine's."""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BRIDGE_NETWORKS = ("10.231.0.1/24", "10.232.0.1/24", "10.233.0.1/24")


@contextmanager
def side_engine(slot: int = 0) -> Iterator[dict[str, str]]:
    """A dockerd of its own, empty; yields the environment that reaches it (DOCKER_HOST). `slot`
    picks the bridge's subnet, so two side engines can run at once."""
    folder = Path(tempfile.mkdtemp(prefix="imagebuild-engine-", dir="/tmp"))  # a short socket path
    socket, bridge = folder / "docker.sock", f"ibe{os.getpid() % 10000}-{slot}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", BRIDGE_NETWORKS[slot], "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    log = (folder / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(folder / "data"), "--exec-root", str(folder / "exec"), "--pidfile", str(folder / "pid"),
         "-H", f"unix://{socket}", "--bridge", bridge, "--iptables=false", "--ip-masq=false"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    env = {**os.environ, "DOCKER_HOST": f"unix://{socket}"}
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(["/usr/bin/docker", "version"], env=env, capture_output=True, check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((folder / "dockerd.log").read_text()[-2000:])
            time.sleep(0.5)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)
        log.close()
        subprocess.run(["ip", "link", "delete", bridge], check=False)
        shutil.rmtree(folder, ignore_errors=True)
