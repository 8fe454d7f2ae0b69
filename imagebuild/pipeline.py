"""The whole pipeline, top to bottom:

load recipes -> plan -> render -> (mirror rewrite: a later step) -> assemble context
-> build -> smoke -> tag.

An image whose content hash is already in the engine is not built again; `latest` moves
only after the smoke notebooks passed.
"""

import datetime
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imagebuild import __version__
from imagebuild.ca import CaServer
from imagebuild.context import HASH_LABEL, IMAGE_LABEL, BuildContext, assemble
from imagebuild.engine import Engine
from imagebuild.plan import BuildPlan, Project, plan
from imagebuild.render import render
from imagebuild.rootfs import ensure_root_image, host_archive
from imagebuild.smoke import SmokeResult, run_smoke
from imagebuild.system import exclusive


@dataclass(frozen=True)
class Reporter:
    """How the pipeline talks: `say` for events, `step` for the current build step."""

    say: Callable[[str], None]
    step: Callable[[str], None]


@dataclass(frozen=True)
class ImageOutcome:
    name: str
    content_hash: str
    ref: str
    image_id: str
    action: str  # "built" or "reused"
    seconds: float
    smoke: SmokeResult | None


def content_ref(project: Project, name: str, content_hash: str) -> str:
    return f"{project.config.build.repository}/{name}:sha-{content_hash[:12]}"


def latest_ref(project: Project, name: str) -> str:
    return f"{project.config.build.repository}/{name}:latest"


def smoke_passed(project: Project, engine: Engine, name: str, image_id: str) -> bool:
    """`latest` moves only after a passing smoke run, so it pointing here means this image passed."""
    latest = engine.image(latest_ref(project, name))
    return latest is not None and latest.id == image_id


def prepare(project: Project, plans: list[BuildPlan], ca_bundle: bytes | None) -> list[BuildContext]:
    """Render and assemble every plan in order; a child's FROM names its parent's content tag."""
    hashes: dict[str, str] = {}
    contexts = []
    for item in plans:
        spec = item.recipe.spec
        base_ref = spec.root if spec.parent is None else content_ref(project, spec.parent, hashes[spec.parent])
        context = assemble(render(item, base_ref or "", ca_bundle=ca_bundle))
        hashes[item.name] = context.content_hash
        contexts.append(context)
    return contexts


def smoke_notebooks(item: BuildPlan, extra: list[Path]) -> list[tuple[str, Path]]:
    """The image's own notebooks, its ancestors' (they must still pass), and the admin's."""
    owners = [*reversed(item.ancestors), item.recipe]
    found = [(recipe.name, path) for recipe in owners for path in recipe.notebooks]
    return found + [("extra", path) for path in extra]


def _revision(root: Path) -> str:
    completed = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"


def _labels(project: Project, context: BuildContext, root_id: str) -> dict[str, str]:
    recipe = context.rendered.plan.recipe
    return {
        HASH_LABEL: context.content_hash,
        IMAGE_LABEL: recipe.name,
        "io.imagebuild.base": context.rendered.base_ref,
        "io.imagebuild.root-id": root_id,
        "io.imagebuild.builder-version": __version__,
        "org.opencontainers.image.title": recipe.name,
        "org.opencontainers.image.description": recipe.spec.description,
        "org.opencontainers.image.created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "org.opencontainers.image.revision": _revision(project.root),
        "org.opencontainers.image.version": f"sha-{context.short_hash}",
    }


def smoke_image(
    project: Project, engine: Engine, item: BuildPlan, ref: str, extra: list[Path], reporter: Reporter
) -> SmokeResult:
    notebooks = smoke_notebooks(item, extra)
    reporter.say(f"smoke-testing {ref} with {len(notebooks)} notebook(s)")
    result = run_smoke(
        engine,
        ref,
        notebooks,
        cell_timeout=item.recipe.spec.smoke.cell_timeout,
        output_dir=project.output_dir / item.name / "smoke",
    )
    if not result.ok:
        raise result.failure()
    return result


def build(
    project: Project,
    names: list[str],
    *,
    everything: bool = False,
    smoke: bool = True,
    ca_bundle: bytes | None = None,
    reporter: Reporter,
) -> list[ImageOutcome]:
    plans = plan(project, names, everything=everything)
    contexts = prepare(project, plans, ca_bundle)
    engine = Engine()
    with exclusive("build", reporter.say):
        return _build_all(project, engine, plans, contexts, smoke=smoke, ca_bundle=ca_bundle, reporter=reporter)


def _build_all(
    project: Project,
    engine: Engine,
    plans: list[BuildPlan],
    contexts: list[BuildContext],
    *,
    smoke: bool,
    ca_bundle: bytes | None,
    reporter: Reporter,
) -> list[ImageOutcome]:
    archive = project.config.bootstrap.archive or host_archive()
    root_ids = {
        root: ensure_root_image(engine, root, archive, reporter.say) for root in sorted({p.root_image for p in plans})
    }
    outcomes = []
    with CaServer(ca_bundle, project.config.build.ca_port) as ca_server:
        for context in contexts:
            outcomes.append(
                _build_one(project, engine, context, root_ids, ca_server=ca_server, smoke=smoke, reporter=reporter)
            )
    return outcomes


def _build_one(
    project: Project,
    engine: Engine,
    context: BuildContext,
    root_ids: dict[str, str],
    *,
    ca_server: CaServer,
    smoke: bool,
    reporter: Reporter,
) -> ImageOutcome:
    item = context.rendered.plan
    ref = content_ref(project, item.name, context.content_hash)
    started = time.monotonic()
    image = engine.image(ref)
    action = "reused"
    if image is None or (image.labels or {}).get(HASH_LABEL) != context.content_hash:
        action = "built"
        output = project.output_dir / item.name
        output.mkdir(parents=True, exist_ok=True)
        (output / "Dockerfile").write_text(context.rendered.dockerfile)
        reporter.say(f"building {item.name} ({ref})")
        image = engine.build(
            context,
            tag=ref,
            labels=_labels(project, context, root_ids[item.root_image]),
            buildargs={"IMAGEBUILD_CA_URL": ca_server.url()},
            log_path=output / "build.log",
            on_step=reporter.step,
        )
    else:
        reporter.say(f"reusing {ref}: an image with content hash {context.short_hash} is present")
    result = None
    if smoke and not smoke_passed(project, engine, item.name, image.id):
        result = smoke_image(project, engine, item, ref, [], reporter)
    if smoke:
        engine.tag(image, latest_ref(project, item.name))
    return ImageOutcome(
        name=item.name,
        content_hash=context.content_hash,
        ref=ref,
        image_id=image.id,
        action=action,
        seconds=round(time.monotonic() - started, 2),
        smoke=result,
    )
