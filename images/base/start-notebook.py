#!/usr/bin/env python3
"""The image's default command (CMD): a standalone Jupyter server, or JupyterHub's single-user
server when a hub started the container (JUPYTERHUB_API_TOKEN is set), so the same image works
with `docker run` and under DockerSpawner without a `cmd`.

Standalone: `jupyter $DOCKER_STACKS_JUPYTER_CMD` (lab, notebook, server; default lab) with the
words of NOTEBOOK_ARGS and this script's arguments, on JUPYTER_PORT (jupyter_server reads it);
RESTARTABLE=yes starts it again whenever it exits. start.sh has already run the hooks.
"""

import os
import shlex
import sys

if "JUPYTERHUB_API_TOKEN" in os.environ:
    print("WARNING: using start-singleuser.py instead of start-notebook.py to start a server associated with JupyterHub.", flush=True)
    os.execv("/usr/local/bin/start-singleuser.py", ["start-singleuser.py", *sys.argv[1:]])

command = ["jupyter", os.environ.get("DOCKER_STACKS_JUPYTER_CMD") or "lab"]
command += shlex.split(os.environ.get("NOTEBOOK_ARGS", "")) + sys.argv[1:]
if os.environ.get("RESTARTABLE") == "yes":
    command.insert(0, "run-one-constantly")
print("Executing:", " ".join(command), flush=True)
os.execvp(command[0], command)
