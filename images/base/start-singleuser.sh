#!/bin/bash
# For hub configurations that name the shell script (c.DockerSpawner.cmd = "start-singleuser.sh").
exec /usr/local/bin/start-singleuser.py "$@"
