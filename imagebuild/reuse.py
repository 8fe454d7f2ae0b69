"""Which image a content hash names, and what a run does with it: build it, smoke-test the
image present, or reuse it. `plan` shows this decision and `build` acts on it; both ask here."""

from dataclasses import dataclass

from imagebuild.build.context import HASH_LABEL, BuildContext
from imagebuild.build.engine import Engine
from imagebuild.build.records import Image
from imagebuild.model.project import Project


def content_ref(project: Project, name: str, content_hash: str) -> str:
    return f"{project.config.build.repository}/{name}:sha-{content_hash[:12]}"


def latest_ref(project: Project, name: str) -> str:
    return f"{project.config.build.repository}/{name}:latest"


def smoke_passed(project: Project, engine: Engine, name: str, image: Image) -> bool:
    """`latest` moves only after a passing smoke run, so it pointing here means this image passed."""
    latest = engine.image(latest_ref(project, name))
    return latest is not None and latest.id == image.id


@dataclass(frozen=True)
class Decision:
    """What to do with one prepared image: 'build', 'smoke' (present, not yet smoke-tested) or
    'reuse' (present and passed), and why, in a line `plan` prints."""

    ref: str
    action: str
    why: str
    image: Image | None


def decide(project: Project, engine: Engine, context: BuildContext, *, rebuild: bool = False) -> Decision:
    """Build when asked to, or when no image carries this content hash; else the image present
    is smoke-tested unless it passed before."""
    name = context.rendered.plan.name
    ref = content_ref(project, name, context.content_hash)
    image = engine.image(ref)
    if rebuild:
        return Decision(ref, "build", "asked to build again (--no-cache)", image)
    if image is None or (image.labels or {}).get(HASH_LABEL) != context.content_hash:
        return Decision(ref, "build", f"no image with content hash {context.short_hash}", image)
    if smoke_passed(project, engine, name, image):
        return Decision(ref, "reuse", "image present, smoke passed", image)
    return Decision(ref, "smoke", "image present, not yet smoke-tested", image)
