#!/bin/bash
# For configurations that name the shell script: the same as start-notebook.py.
exec /usr/local/bin/start-notebook.py "$@"
