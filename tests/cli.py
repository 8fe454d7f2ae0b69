"""The `imagebuild` command run inside the test process: the console script's own `main` (errors
become one message and an exit code), with its output captured, in a second rather than the
several a fresh interpreter needs to import the package."""

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from imagebuild.cli.main import main


@dataclass(frozen=True)
class CliResult:
    """What a subprocess would show: the exit code and both streams as text."""

    returncode: int
    stdout: str
    stderr: str


def imagebuild(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> CliResult:
    """`imagebuild args...` run in `cwd` with `env` added to this process's environment (both
    restored afterwards), as the installed console script runs it."""
    before, argv = Path.cwd(), sys.argv
    os.chdir(cwd)
    try:
        with CliRunner().isolation(env=dict(env or {})) as (stdout, stderr, _):
            sys.argv = ["imagebuild", *args]
            try:
                main()
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            sys.stdout.flush()
            sys.stderr.flush()
            return CliResult(code, stdout.getvalue().decode(), stderr.getvalue().decode())
    finally:
        sys.argv = argv
        os.chdir(before)
