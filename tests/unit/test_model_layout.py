"""Import direction of the files a user writes and of mirror rewriting: model/ imports only
itself (and errors); the URL rules and the rewriters import only the model and each other."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "imagebuild"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("imagebuild")}


ALLOWED = {
    "model": ("imagebuild.model", "imagebuild.errors"),
    "mirrors/rules.py": ("imagebuild.model", "imagebuild.errors"),
    "mirrors/rewrite": ("imagebuild.model", "imagebuild.errors", "imagebuild.mirrors.rules", "imagebuild.mirrors.rewrite"),
}


@pytest.mark.parametrize("where", sorted(ALLOWED))
def test_imports_point_towards_the_model(where):
    target = PACKAGE / where
    files = [target] if target.is_file() else sorted(target.rglob("*.py"))
    assert files
    for path in files:
        stray = {name for name in _imports(path) if not name.startswith(ALLOWED[where])}
        assert not stray, f"{path.relative_to(PACKAGE)} imports {sorted(stray)}"
