"""Step 10, push: publish a smoke-tested image under its tags, and record it only once the
registry confirms every tag.

Immutable tags that the registry already has for this image are left alone; those it has for
another image are held (never overwritten) and reported. Each push is retried with backoff on
transient failures, errors the engine hides in a successful-looking stream are caught, and
afterwards every tag is read back from the registry API and compared with the image. Only then
is build/<name>/published.json updated; a failure says which tags were pushed and which not.
"""

import datetime
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagebuild.build.context import HASH_LABEL
from imagebuild.build.engine import Engine
from imagebuild.build.records import Image, PushFailure
from imagebuild.errors import PublishError
from imagebuild.model.project import Project
from imagebuild.plan import BuildPlan
from imagebuild.publish.registry import Registry
from imagebuild.publish.tags import (
    ImageTags,
    image_tags,
    parse_versions,
    version_commands,
    version_script,
)

ATTEMPTS = 4
BACKOFF_SECONDS = 2.0
PERMANENT = ("unauthorized", "denied", "authentication required", "manifest invalid", "name unknown")
CREATED_LABEL = "org.opencontainers.image.created"


@dataclass(frozen=True)
class TagOutcome:
    tag: str
    action: str  # "pushed", "present" (already this image), "held" (names another image; kept)
    digest: str | None


@dataclass(frozen=True)
class PublishResult:
    name: str
    registry: str
    repository: str
    image_id: str
    content_hash: str
    digest: str
    tags: list[TagOutcome] = field(default_factory=list)

    @property
    def held(self) -> list[TagOutcome]:
        return [t for t in self.tags if t.action == "held"]


def registry_repository(project: Project, name: str) -> str:
    return f"{project.config.build.repository}/{name}"


def read_tags(engine: Engine, item: BuildPlan, image: Image, moving: str) -> ImageTags:
    """The image's tags: its build date, content hash and the versions its recipes declare."""
    labels = image.labels or {}
    commands = version_commands(item)
    output = engine.run_script(str(image.id), version_script(commands)) if commands else ""
    versions = parse_versions(output, commands, item.name)
    return image_tags(created=labels.get(CREATED_LABEL, ""), content_hash=labels[HASH_LABEL], versions=versions, moving=moving)


def _push_with_retries(
    engine: Engine, repository: str, tag: str, login: tuple[str, str] | None, say: Callable[[str], None]
) -> str:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return engine.push(repository, tag, login)
        except PushFailure as failure:
            message = str(failure)
            if attempt == ATTEMPTS or any(word in message.lower() for word in PERMANENT):
                raise PublishError(f"pushing {repository}:{tag} failed: {message}") from None
            wait = BACKOFF_SECONDS * 2 ** (attempt - 1)
            say(f"pushing {repository}:{tag} failed ({message}); trying again in {wait:.0f} s")
            time.sleep(wait)
    raise AssertionError("unreachable")


def publish(
    project: Project,
    engine: Engine,
    item: BuildPlan,
    image: Image,
    host: str,
    *,
    login: tuple[str, str] | None,
    moving: str,
    say: Callable[[str], None],
) -> PublishResult:
    """Push `image` under all its tags to `host` (with the run's registry `login`, else the
    Docker configuration's), then read every tag back before recording the publication."""
    registry = Registry(host, login)
    registry.ping()
    repository = registry_repository(project, item.name)
    remote_name = f"{host}/{repository}"
    tags = read_tags(engine, item, image, moving)
    outcomes: dict[str, TagOutcome] = {}
    for tag in tags.immutable:
        remote = registry.image(repository, tag)
        if remote is None:
            continue
        if remote.config_digest == image.id:
            outcomes[tag] = TagOutcome(tag, "present", remote.digest)
        else:
            outcomes[tag] = TagOutcome(tag, "held", remote.digest)
            say(f"{remote_name}:{tag} already names another image ({remote.digest[:19]}); it stays as it is")
    to_push = [tag for tag in tags.all if tag not in outcomes]
    pushed: list[str] = []
    try:
        for tag in to_push:
            engine.tag(image, f"{remote_name}:{tag}")
            say(f"pushing {remote_name}:{tag}")
            digest = _push_with_retries(engine, remote_name, tag, login, say)
            outcomes[tag] = TagOutcome(tag, "pushed", digest)
            pushed.append(tag)
    except PublishError as error:
        missing = [tag for tag in to_push if tag not in pushed]
        error.message += f"\n  pushed: {', '.join(pushed) or '(none)'}\n  not pushed: {', '.join(missing)}"
        error.hint = f"nothing was recorded; run the same command again to push the rest to {host}"
        raise
    finally:
        for tag in to_push:
            if engine.image(f"{remote_name}:{tag}") is not None:
                engine.untag(f"{remote_name}:{tag}")
    digest = _verify(registry, repository, image, [o for o in outcomes.values() if o.action != "held"])
    result = PublishResult(
        name=item.name,
        registry=host,
        repository=repository,
        image_id=str(image.id),
        content_hash=(image.labels or {})[HASH_LABEL],
        digest=digest,
        tags=[outcomes[tag] for tag in tags.all],
    )
    record(project, result)
    return result


def _verify(registry: Registry, repository: str, image: Image, outcomes: list[TagOutcome]) -> str:
    """Every tag, read back from the registry, names this image (its config digest is the image ID)."""
    image_id = str(image.id)
    digests = set()
    for outcome in outcomes:
        remote = registry.image(repository, outcome.tag)
        if remote is None or remote.config_digest != image_id:
            found = "no such tag" if remote is None else f"image {remote.config_digest[:19]}"
            raise PublishError(
                f"after pushing, {registry.host}/{repository}:{outcome.tag} has {found}, not {image_id[:19]}",
                hint="nothing was recorded; push again",
            )
        if outcome.action == "pushed" and outcome.digest != remote.digest:
            raise PublishError(
                f"the engine pushed {outcome.digest} but the registry serves {remote.digest} for {outcome.tag}",
                hint="nothing was recorded; push again",
            )
        digests.add(remote.digest)
    if len(digests) != 1:
        raise PublishError(f"the tags of {repository} name different manifests: {sorted(digests)}")
    return digests.pop()


def record_path(project: Project, name: str) -> Path:
    return project.output_dir / name / "published.json"


def read_record(project: Project, name: str) -> list[dict[str, Any]]:
    path = record_path(project, name)
    entries: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []
    return entries


def record(project: Project, result: PublishResult) -> None:
    """Append the publication, atomically: a reader sees the old record or the new one."""
    path = record_path(project, result.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = read_record(project, result.name)
    entries.append({**asdict(result), "published_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")})
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps(entries, indent=2))
    staging.replace(path)
