"""`imagebuild ci ...`: the build graph written out for a CI system."""

from pathlib import Path
from typing import Annotated

import typer

from imagebuild.ci import github_workflow, matrix
from imagebuild.cli.terminal import err
from imagebuild.errors import LockError
from imagebuild.model.project import load_project
from imagebuild.plan import plan

ci_app = typer.Typer(help="Write the build graph as a CI workflow (one job per image).", no_args_is_help=True)
WORKFLOW = Path(".github/workflows/images.yml")


@ci_app.command("github")
def github(
    output: Annotated[Path | None, typer.Option("--output", help=f"where to write it (default: {WORKFLOW} in the project)")] = None,
    check: Annotated[bool, typer.Option("--check", help="write nothing; exit 8 when the file is not what would be written")] = False,
) -> None:
    """A GitHub Actions workflow: one job per image, parents' jobs first, images handed over through the registry."""
    project = load_project()
    path = output or project.root / WORKFLOW
    jobs = matrix(plan(project, [], everything=True))
    text = github_workflow(jobs)
    if check:
        if not path.is_file() or path.read_text() != text:
            raise LockError(f"{path} is not the workflow of the current recipes", path=path, hint="run 'imagebuild ci github'")
        err.print(f"{path} is up to date", markup=False)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    err.print(f"wrote {path} ({len(jobs)} jobs, {max(job.level for job in jobs) + 1} levels)", markup=False)
