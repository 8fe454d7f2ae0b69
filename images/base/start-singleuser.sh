#!/bin/bash
# What DockerSpawner runs: the hooks, then JupyterHub's single-user server with its arguments.
set -e
exec /usr/local/bin/start.sh jupyterhub-singleuser "$@"
