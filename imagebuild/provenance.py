"""What a build leaves behind besides the image: its labels (content hash, provenance, OCI
facts) and build/NAME/manifest.{json,md} (inventory, provenance, smoke results, tags)."""

import datetime
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from imagebuild import __version__
from imagebuild.build.context import HASH_LABEL, IMAGE_LABEL, BuildContext
from imagebuild.build.engine import Engine
from imagebuild.build.records import Image
from imagebuild.build.smoke import SMOKED_REF_FILE, SmokeResult
from imagebuild.errors import EngineError
from imagebuild.model.mirror import Mirror
from imagebuild.model.project import Project
from imagebuild.publish.manifest import INVENTORY_PATH, SECTIONS, ImageFacts, manifest
from imagebuild.publish.manifest import write as write_manifest
from imagebuild.publish.push import PublishResult
from imagebuild.reuse import content_ref
from imagebuild.system import run

GIT_TIMEOUT = 30


def revision(root: Path) -> str:
    """The project's commit, or 'unknown' outside git (a label, never a reason to fail a build)."""
    try:
        completed = run(["git", "-C", str(root), "rev-parse", "HEAD"], timeout=GIT_TIMEOUT, check=False)
    except EngineError:  # git not installed, or it hung
        return "unknown"
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"


ROOT_ID_LABEL = "io.imagebuild.root-id"
"""The image ID of the root image at the bottom of the chain (a child inherits its parent's)."""


def labels(project: Project, context: BuildContext, root_id: str) -> dict[str, str]:
    recipe = context.rendered.plan.recipe
    return {
        HASH_LABEL: context.content_hash,
        IMAGE_LABEL: recipe.name,
        "io.imagebuild.base": context.rendered.base_ref,
        ROOT_ID_LABEL: root_id,
        "io.imagebuild.builder-version": __version__,
        "org.opencontainers.image.title": recipe.name,
        "org.opencontainers.image.description": recipe.spec.description,
        "org.opencontainers.image.created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "org.opencontainers.image.revision": revision(project.root),
        "org.opencontainers.image.version": f"sha-{context.short_hash}",
    }


def _earlier_smoke(folder: Path, ref: str) -> list[dict[str, Any]]:
    """The results of the last smoke run in `folder`, if it was a run of `ref` (else none)."""
    smoked = folder / SMOKED_REF_FILE
    if not smoked.is_file() or smoked.read_text() != ref:
        return []
    results: list[dict[str, Any]] = json.loads((folder / "smoke.json").read_text())
    return results


def _image_facts(engine: Engine, ref: str, image: Image, written: Path) -> ImageFacts:
    """The image's labels, size and inventory. The inventory is taken from the manifest written
    for this very image (same content tag, build time and size) when there is one: copying it out
    of the image (a container created and removed) is the slowest step of a run that reuses it."""
    try:
        earlier = json.loads(written.read_text()) if written.is_file() else {}
    except (OSError, ValueError):
        earlier = {}
    created = image.labels.get("org.opencontainers.image.created")
    if (
        isinstance(earlier, dict)
        and created is not None
        and (earlier.get("ref"), earlier.get("created"), earlier.get("size")) == (ref, created, image.size)
    ):
        return ImageFacts(ref, image.labels, image.size, {section: earlier.get(section, {}) for section in SECTIONS})
    return ImageFacts.of(ref, image.labels, image.size, engine.read_file(ref, INVENTORY_PATH))


def write_image_manifest(
    project: Project,
    engine: Engine,
    context: BuildContext,
    image: Image,
    smoke: SmokeResult | None,
    published: PublishResult | None,
    mirror: Mirror | None,
) -> None:
    """build/NAME/manifest.{json,md}: the image's inventory, provenance, smoke results, tags."""
    name = context.rendered.plan.name
    ref = content_ref(project, name, context.content_hash)
    facts = _image_facts(engine, ref, image, project.output_dir / name / "manifest.json")
    runs = [asdict(n) for n in smoke.notebooks] if smoke else _earlier_smoke(project.output_dir / name / "smoke", ref)
    document = manifest(
        facts,
        name=name,
        content_hash=context.content_hash,
        mirror=mirror.name if mirror else None,
        smoke=runs,
        published=asdict(published) if published else None,
    )
    write_manifest(document, project.output_dir / name)
