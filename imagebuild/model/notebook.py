"""Smoke notebooks are checked to be notebooks (nbformat 4 JSON with cells) when a recipe is
loaded, not when the image is already built and the notebook runs."""

import json
from pathlib import Path
from typing import Any

from imagebuild.errors import RecipeError
from imagebuild.model.text import TOO_DEEP, TOO_DEEP_HINT, read_text

CELL_TYPES = ("code", "markdown", "raw")
_HINT = "open and save it in JupyterLab (a notebook is nbformat 4 JSON with a 'cells' list)"


def load_notebook(path: Path) -> dict[str, Any]:
    """The notebook at `path` as JSON, or one RecipeError saying why it is none."""
    text = read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecipeError(f"line {error.lineno}, column {error.colno}: not valid JSON: {error.msg}", path=path, hint=_HINT) from None
    except RecursionError:
        raise RecipeError(TOO_DEEP, path=path, hint=TOO_DEEP_HINT) from None
    if not isinstance(document, dict):
        raise RecipeError("is not a notebook: the top level must be a JSON object", path=path, hint=_HINT)
    if document.get("nbformat") != 4:
        raise RecipeError(
            f"is not an nbformat 4 notebook (nbformat: {document.get('nbformat', 'missing')})",
            path=path,
            hint="convert it: jupyter nbconvert --to notebook --nbformat 4 FILE",
        )
    cells = document.get("cells")
    if not isinstance(cells, list):
        raise RecipeError("is not a notebook: 'cells' must be a list", path=path, hint=_HINT)
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in CELL_TYPES:
            raise RecipeError(
                f"cells[{index}]: not a cell (each needs a cell_type: {', '.join(CELL_TYPES)})", path=path, hint=_HINT
            )
        if not isinstance(cell.get("source", ""), str | list):
            raise RecipeError(f"cells[{index}].source: must be text or a list of lines", path=path, hint=_HINT)
    return document
