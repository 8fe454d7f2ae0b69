#!/usr/bin/env python3
"""JupyterHub's single-user server (what start-notebook.py turns into under a hub): the hub
passes its settings as environment variables; NOTEBOOK_ARGS and the arguments are added."""

import os
import shlex
import sys

command = ["jupyterhub-singleuser", *shlex.split(os.environ.get("NOTEBOOK_ARGS", "")), *sys.argv[1:]]
print("Executing:", " ".join(command), flush=True)
os.execvp(command[0], command)
