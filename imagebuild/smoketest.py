"""Step 8, smoke: which notebooks an image runs (its own, its ancestors', the admin's), and
running them against the image; `latest` moves only after they pass."""

from collections.abc import Callable
from pathlib import Path

from imagebuild.build.engine import Engine
from imagebuild.build.smoke import NotebookResult, SmokeResult, run_smoke
from imagebuild.model.project import Project
from imagebuild.plan import BuildPlan
from imagebuild.publish.manifest import input_provenance


def smoke_notebooks(
    item: BuildPlan, extra: list[Path], assets_in_image: set[str]
) -> tuple[list[tuple[str, Path]], list[NotebookResult]]:
    """The notebooks to run: the image's own, its ancestors' (they must still pass), and the
    admin's; and those skipped because the optional asset they need is not in the image."""
    run, skipped = [], []
    for recipe in [*reversed(item.ancestors), item.recipe]:
        needs = recipe.spec.smoke.needs_asset
        for path in recipe.notebooks:
            # (a [source] recipe needs no asset, and its notebooks are not under its folder)
            asset = needs.get(path.relative_to(recipe.directory).as_posix()) if needs else None
            if asset is None or asset in assets_in_image:
                run.append((recipe.name, path))
            else:
                reason = f"optional asset '{asset}' is not in the image"
                skipped.append(NotebookResult(owner=recipe.name, notebook=path.name, ok=True, seconds=0.0, skipped=reason))
    return run + [("extra", path) for path in extra], skipped


def smoke_image(
    project: Project, engine: Engine, item: BuildPlan, ref: str, extra: list[Path], say: Callable[[str], None]
) -> SmokeResult:
    """Run the image's smoke notebooks (and `extra`) against `ref`; a failure raises."""
    image = engine.image(ref)
    labels = (image.labels if image else None) or {}
    notebooks, skipped = smoke_notebooks(item, extra, set(input_provenance(labels)["assets"]))
    say(f"smoke-testing {ref} with {len(notebooks)} notebook(s)")
    for notebook in skipped:
        say(f"warning: skipping {notebook.owner}/{notebook.notebook}: {notebook.skipped}")
    result = run_smoke(
        engine,
        ref,
        notebooks,
        cell_timeout=item.recipe.spec.smoke.cell_timeout,
        output_dir=project.output_dir / item.name / "smoke",
        skipped=skipped,
    )
    if not result.ok:
        raise result.failure()
    return result

