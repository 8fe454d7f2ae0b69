"""Step 8, smoke: execute an image's notebooks (and its parents') inside a throwaway
container, after the start hooks ran exactly as they do under JupyterHub."""

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imagebuild.build.engine import Engine
from imagebuild.build.render import User, support_file
from imagebuild.errors import SmokeError

if TYPE_CHECKING:
    pass

WORKDIR = "/tmp/imagebuild-smoke"
ORDER_FILE = "notebooks.json"
SMOKED_REF_FILE = "smoke.ref"
# Run the docker-stacks start hooks when the image has them and its entrypoint has not run
# start.sh already (images before start.sh became the entrypoint), then the notebooks.
START = 'if [ -z "$_START_SH_EXECUTED" ] && command -v start.sh >/dev/null; then exec start.sh "$@"; else exec "$@"; fi'


@dataclass(frozen=True)
class NotebookResult:
    owner: str
    notebook: str
    ok: bool
    seconds: float
    cell: int | None = None
    source: str = ""
    error: str = ""
    skipped: str = ""  # why it did not run (an optional asset it needs is not in the image)


@dataclass(frozen=True)
class SmokeResult:
    image: str
    notebooks: tuple[NotebookResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.notebooks)

    def summary(self) -> str:
        skipped = sum(1 for result in self.notebooks if result.skipped)
        passed = f"{len(self.notebooks) - skipped} passed"
        return f"{passed}, {skipped} skipped" if skipped else passed

    def failure(self) -> SmokeError:
        lines = [f"smoke test of {self.image} failed"]
        for result in self.notebooks:
            if not result.ok:
                lines.append(f"  {result.owner}/{result.notebook}, cell {result.cell}: {result.error}")
                lines += [f"      {line}" for line in result.source.splitlines()[:8]]
        return SmokeError("\n".join(lines), hint="run 'imagebuild smoke NAME' after fixing the notebook or the image")


def _entry(name: str, data: bytes | None = None) -> tuple[tarfile.TarInfo, io.BytesIO | None]:
    """A tar member owned by the image's user, so the notebooks may write beside themselves."""
    user = User()
    info = tarfile.TarInfo(name)
    info.uid, info.gid = user.uid, user.gid
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        return info, None
    info.size, info.mode = len(data), 0o644
    return info, io.BytesIO(data)


def _archive(notebooks: list[tuple[str, Path]]) -> bytes:
    """imagebuild-smoke/run_notebooks.py, imagebuild-smoke/<owner>/<notebook>.ipynb, and the
    order to run them in (parents first)."""
    top = Path(WORKDIR).name
    members = [_entry(top), _entry(f"{top}/run_notebooks.py", support_file("run_notebooks.py"))]
    members += [_entry(f"{top}/{owner}") for owner in sorted({owner for owner, _ in notebooks})]
    members += [_entry(f"{top}/{owner}/{path.name}", path.read_bytes()) for owner, path in notebooks]
    order = json.dumps([f"{owner}/{path.name}" for owner, path in notebooks]).encode()
    members.append(_entry(f"{top}/{ORDER_FILE}", order))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, data)
    return buffer.getvalue()


def run_smoke(
    engine: Engine,
    image: str,
    notebooks: list[tuple[str, Path]],
    *,
    cell_timeout: int,
    output_dir: Path,
    skipped: list[NotebookResult],
) -> SmokeResult:
    """Run `notebooks` (owner recipe, path) in `image`; the container is always removed.
    `skipped` (not run, with the reason) are reported beside the results."""
    if not notebooks:
        return SmokeResult(image=image, notebooks=tuple(skipped))
    output_dir.mkdir(parents=True, exist_ok=True)
    limit = cell_timeout * 50 + 120
    run = engine.run_offline(
        image,
        ["bash", "-c", START, "start", "python", f"{WORKDIR}/run_notebooks.py", WORKDIR, ORDER_FILE, str(cell_timeout)],
        environment={"IMAGEBUILD_SMOKE": "1"},
        put=_archive(notebooks),
        collect=f"{WORKDIR}/results.json",
        timeout=limit,
    )
    (output_dir / "smoke.log").write_text(run.logs)
    if run.exit_status is None:
        raise SmokeError(f"smoke test of {image} did not finish within {limit} s", path=output_dir / "smoke.log")
    ran = _results(run.collected)
    if not ran:
        tail = "\n".join(f"    {line}" for line in run.logs.splitlines()[-15:])
        raise SmokeError(
            f"smoke run in {image} exited with {run.exit_status} before reporting results:\n{tail}",
            path=output_dir / "smoke.log",
        )
    result = SmokeResult(image=image, notebooks=ran + tuple(skipped))
    (output_dir / "smoke.json").write_text(json.dumps([vars(n) for n in result.notebooks], indent=2))
    (output_dir / SMOKED_REF_FILE).write_text(image)  # which image these results belong to
    return result


def _results(collected: bytes | None) -> tuple[NotebookResult, ...]:
    """The results run_notebooks.py wrote, or none when it stopped before writing them."""
    if not collected:
        return ()
    try:
        return tuple(NotebookResult(**item) for item in json.loads(collected))
    except (ValueError, TypeError):  # a half-written or foreign file: reported like a missing one
        return ()
