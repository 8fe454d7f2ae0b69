"""Executed inside the image by `imagebuild smoke`: run the notebooks listed in the order file
(argument 2, in that order) with nbclient and write results.json (which cell failed, with what error, how long each took)."""

import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError


def failing_cell(notebook: nbformat.NotebookNode) -> tuple[int | None, str, str]:
    for index, cell in enumerate(notebook.cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return index, cell.source, f"{output.get('ename')}: {output.get('evalue')}"
    return None, "", ""


def run(root: Path, order_file: str, cell_timeout: int) -> list[dict[str, object]]:
    results = []
    for relative in json.loads((root / order_file).read_text()):
        path = root / relative
        notebook = nbformat.read(path, as_version=4)
        client = NotebookClient(
            notebook, timeout=cell_timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        started = time.monotonic()
        result: dict[str, object] = {"owner": path.parent.name, "notebook": path.name, "ok": True}
        print(f"running {path.parent.name}/{path.name}", flush=True)
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            index, source, error = failing_cell(notebook)
            result.update(ok=False, cell=index, source=source, error=error or str(exc).strip().splitlines()[-1])
        result["seconds"] = round(time.monotonic() - started, 2)
        nbformat.write(notebook, path.with_suffix(".executed.ipynb"))
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    outcome = run(folder, sys.argv[2], int(sys.argv[3]))
    (folder / "results.json").write_text(json.dumps(outcome, indent=2))
