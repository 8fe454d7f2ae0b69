"""Shared helpers: the repository root and a way to write small projects in tmp folders."""

import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

REPO = Path(__file__).resolve().parent.parent


def write_notebook(path: Path, *sources: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


class ProjectFactory:
    """A throwaway project: the bundled base recipe copied in, plus recipes a test writes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "images").mkdir(parents=True)
        shutil.copytree(REPO / "images" / "base", root / "images" / "base")

    def recipe(self, name: str, toml: str, files: dict[str, str] | None = None) -> Path:
        folder = self.root / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "image.toml").write_text(textwrap.dedent(toml))
        for relative, text in (files or {}).items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(textwrap.dedent(text))
        return folder


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    return ProjectFactory(tmp_path / "project")
