"""A run with nothing to do starts fast: the libraries only some commands need are imported where
they are used, never when the command line starts or an image is rendered and hashed (bench/nochange.py)."""

import json
import subprocess
import sys

from tests.conftest import REPO

DEFERRED = [
    "conda_lock",  # conda locks: `lock` and conda recipes only
    "rattler",
    "repo2docker",  # [source] recipes only
    "imagebuild.build.binder",
    "oras",  # registry commands only
    "jsonschema",
    "debian",  # version order in `diff`
    "markdown_it",  # `diff`'s Markdown
    "packaging.metadata",  # mirror sync
    "packaging.requirements",
]

REPORT = "import json, sys; print(json.dumps(sorted(m for m in {deferred} if m in sys.modules)))"


def loaded_after(code: str) -> list[str]:
    """Which of DEFERRED a fresh interpreter has imported after running `code` in the repository."""
    script = f"{code}\n{REPORT.format(deferred=DEFERRED)}"
    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.splitlines()[-1])


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    assert loaded_after("import imagebuild.cli.main") == []


def test_rendering_and_hashing_an_image_imports_none_of_them() -> None:
    """`render` runs the no-change path's steps (gather, render, assemble, hash) without an engine."""
    run = "from imagebuild.cli.main import app\ntry:\n    app(['render', 'base'])\nexcept SystemExit as exit:\n    assert not exit.code, exit.code"
    assert loaded_after(run) == []
