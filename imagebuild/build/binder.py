"""Step 4 for a [source] recipe, capture: repo2docker fetches the repository at its locked commit
(its content providers) and detects and renders its build (its build packs); instead of a
container engine it is handed CaptureEngine, which keeps the build context it is given. The
result is a RenderedImage like any recipe's, so the mirror step, assembly, content hash, build,
smoke, tags and push treat it as any other image.

The repository's git metadata (.git) is left out of the context: a fresh clone's index and logs
differ from clone to clone, and the content hash must not. The commit is in the lock and in the
image's io.imagebuild.source label, the one line imagebuild adds to repo2docker's Dockerfile here.
"""

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from repo2docker.app import Repo2Docker
from repo2docker.contentproviders import Git
from repo2docker.contentproviders.base import ContentProviderException
from repo2docker.engine import ContainerEngine

from imagebuild.build.engine import context_tar
from imagebuild.build.render import ContextFile, RenderedImage, User, context_files, source_label
from imagebuild.errors import LockError, RecipeError
from imagebuild.inputs.devpackages import LockedDevPackage
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import Mirror
from imagebuild.model.recipe import globbed
from imagebuild.plan import BuildPlan

CAPTURE_ENGINE = "imagebuild-capture"
"""CaptureEngine's name in the "repo2docker.engines" entry-point group (pyproject.toml)."""
PLATFORM = "linux/amd64"
"""What repo2docker renders for (it picks the conda lock by it): the images' platform, not the host's."""
DEFAULT_SMOKE = ["**/*.ipynb"]
"""A [source] recipe's smoke notebooks unless [smoke].notebooks says otherwise: every notebook in the repository."""


class CaptureEngine(ContainerEngine):  # type: ignore[misc]  # repo2docker ships no type information
    """A repo2docker engine that builds nothing: `build` stores the context on the Repo2Docker app
    (`captured`: Dockerfile text and context files), and no image is ever present."""

    def build(self, *, fileobj: io.BytesIO | None = None, path: str = "", dockerfile: str = "", **kwargs: Any) -> list[str]:
        if fileobj is not None:  # a build pack's rendered context: Dockerfile at the top
            self.parent.captured = _read_context(fileobj, "Dockerfile")
        else:  # binder/Dockerfile: the checkout is the context, as docker-py would send it
            self.parent.captured = _read_context(io.BytesIO(context_tar(Path(path), dockerfile)), dockerfile)
        return []

    def inspect_image(self, image: str) -> None:
        """Nothing is present, so repo2docker always renders and 'builds'."""
        return


def _read_context(fileobj: io.BufferedIOBase, dockerfile: str) -> tuple[str, tuple[ContextFile, ...]]:
    """(Dockerfile text, every other regular file) of a context tar, without git metadata."""
    files = context_files(fileobj.read(), where="[source].repo")
    text = next((item.data.decode() for item in files if item.arcname == dockerfile), "")
    return text, tuple(item for item in files if item.arcname != "Dockerfile")  # the one repo2docker builds


def fetch_location(location: str, mirror: Mirror | None) -> str:
    """The URL git clones: the mirror's [git] rewrite of the repository's URL, when it has one."""
    return url_rules(mirror.spec).only("git").apply_line(location) if mirror else location


def capture(item: BuildPlan, source: LockedDevPackage, mirror: Mirror | None, kept: Path) -> RenderedImage:
    """The build context repo2docker makes of the repository at `source.commit`.

    Its base is repo2docker's choice (the FROM of binder/Dockerfile, or `Repo2Docker.base_image`);
    the mirror step routes it. The smoke notebooks are copied out of the checkout into `kept` (a
    folder of the host cache), where they stay for the smoke run.
    """
    recipe = item.recipe
    assert recipe.source is not None  # a [source] recipe's, resolved by load_recipe
    with tempfile.TemporaryDirectory(prefix="imagebuild-source-") as scratch:
        checkout = Path(scratch) / "checkout"
        app = Repo2Docker(
            repo=fetch_location(recipe.source, mirror),
            ref=source.commit,
            engine=CAPTURE_ENGINE,
            content_providers=[Git],  # locked by git; no DOI or data-repository probes on a filtered network
            git_workdir=str(checkout),
            cleanup_checkout=False,
            default_buildpack=None,  # a repository without Binder files is an error, not a bare Python image
            user_id=User().uid,
            user_name=User().name,
            platform=PLATFORM,
            output_image_spec=f"imagebuild-capture/{recipe.name}:{source.commit[:12]}",
            labels={"repo2docker.repo": source.url},  # as the recipe writes it, not the mirror's URL
            log_level=logging.WARNING,
        )
        app.initialize()
        _run(app, item, source)
        dockerfile, files = app.captured
        patterns = recipe.spec.smoke.notebooks if "notebooks" in recipe.spec.smoke.model_fields_set else DEFAULT_SMOKE
        notebooks = _keep(globbed(checkout, patterns), checkout, kept / source.commit)
    return RenderedImage(
        plan=replace(item, recipe=replace(recipe, notebooks=notebooks)),
        base_ref="",  # the mirror step routes the FROM and records it here (mirrors/captured.py)
        dockerfile=dockerfile.rstrip("\n") + "\n" + source_label(source),
        files=files,
    )


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The git commands repo2docker runs write to the process's stdout (`HEAD is now at ...`);
    they go to stderr, so stdout keeps only a command's own (e.g. --json) output."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _run(app: Repo2Docker, item: BuildPlan, source: LockedDevPackage) -> None:
    """repo2docker's own build flow, its failures turned into one line each."""
    where = f"{item.name} [source] {source.url} at {source.commit[:12]} (ref '{source.ref}')"
    try:
        with _stdout_to_stderr():
            app.build()
    except ContentProviderException as error:
        raise LockError(
            f"{where}: cannot be fetched: {_first_line(error)}",
            path=item.recipe.path,
            hint="check the URL and your access; behind a filtered network add a [git] rewrite to the mirror profile",
        ) from None
    except ValueError as error:  # repo2docker's word for a commit it cannot check out, and for bad Binder files
        if "check out" not in str(error):
            raise RecipeError(f"[source]: repo2docker cannot build {where}: {_first_line(error)}", path=item.recipe.path) from None
        raise LockError(
            f"{where}: the locked commit is not in the repository",
            path=item.recipe.path,
            hint=f"if it was force-pushed away, run 'imagebuild lock {item.name}' to pin the ref again",
        ) from None
    except SystemExit:  # repo2docker exits when no build pack detects the repository
        raise RecipeError(
            f"[source]: repo2docker finds no environment specification in {source.url} at {source.commit[:12]}",
            path=item.recipe.path,
            hint="add Binder files to the repository (requirements.txt, environment.yml, binder/Dockerfile, ...), "
            "or point [source] at another ref",
        ) from None


def _first_line(error: Exception) -> str:
    return next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _keep(notebooks: tuple[Path, ...], checkout: Path, folder: Path) -> tuple[Path, ...]:
    """Copies of `notebooks` in `folder` (of the host cache, by commit), so the smoke run still has them."""
    kept = []
    for notebook in notebooks:
        target = folder / notebook.relative_to(checkout)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.copyfile(notebook, staged)
        staged.replace(target)
        kept.append(target)
    return tuple(kept)
