#!/usr/bin/env python3
"""The image's HEALTHCHECK: healthy when the Jupyter server of NB_USER answers on its API.

The server is found through the runtime file it writes (jpserver-<pid>.json, in NB_USER's
Jupyter runtime folder or JUPYTER_RUNTIME_DIR); files left by a server that no longer runs (a
home volume outlives containers) are skipped. A container whose entrypoint is not start.sh
runs something else than a notebook server (the bundled hub's own services replace the
entrypoint), so there is nothing to check and it reports healthy.
"""

import json
import os
import ssl
import sys
import urllib.request
from pathlib import Path


def started_by_start_sh() -> bool:
    words = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    return any(os.path.basename(word) == b"start.sh" for word in words)


def live_servers(runtime: Path) -> list[dict]:
    found = []
    for path in sorted(runtime.glob("jpserver-*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{info.get('pid')}").exists():
            found.append(info)
    return found


def main() -> int:
    if not started_by_start_sh():
        print("not started through start.sh: no notebook server to check")
        return 0
    # docker exec runs this as the image's user, whose HOME may not be NB_USER's
    os.environ["HOME"] = "/home/" + os.environ.get("NB_USER", "jovyan")
    from jupyter_core.paths import jupyter_runtime_dir

    servers = live_servers(Path(jupyter_runtime_dir()))
    if not servers:
        print(f"no running Jupyter server found in {jupyter_runtime_dir()}")
        return 1
    url = servers[0]["url"]
    if not url.startswith(("http://", "https://")):
        print(f"server listens on {url}, not on TCP: nothing to ask")
        return 0
    unverified = ssl._create_unverified_context()  # GEN_CERT's certificate is self-signed
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=unverified))
    with opener.open(url.rstrip("/") + "/api", timeout=3) as response:
        print(response.status, response.read(200).decode(errors="replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
