"""Images handed between machines through the registry, by content tag: what a CI matrix job and
a nightly on a fresh runner do instead of building a parent again.

An image published under its content tag (`sha-<hash>`) passed its smoke notebooks before it was
pushed, so pulling it and tagging it locally as that content and as `latest` makes the pipeline
reuse it. The registry's answer is checked first: the tag's image must carry the content hash it
is named by, and, when the job that pushed it said which manifest digest it pushed
(`--parent-digest NAME=DIGEST`), that digest; anything else is refused before anything is built.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from imagebuild.build.context import HASH_LABEL, BuildContext
from imagebuild.build.engine import Engine
from imagebuild.config import RunConfig
from imagebuild.errors import PublishError, RecipeError
from imagebuild.publish.push import registry_repository
from imagebuild.publish.registry import Registry
from imagebuild.reuse import content_ref, latest_ref

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def parse_digests(pairs: list[str]) -> dict[str, str]:
    """`--parent-digest NAME=sha256:...` values as name -> digest."""
    digests = {}
    for pair in pairs:
        name, _, digest = pair.partition("=")
        if not name or not _DIGEST.fullmatch(digest):
            raise RecipeError(
                f"--parent-digest {pair!r}: expected NAME=sha256:<64 hex digits>",
                hint="pass the digest the parent's job printed (build --push --json: published.digest)",
            )
        digests[name] = digest
    return digests


@dataclass(frozen=True)
class Handoff:
    """Where published images come from, and the digests their jobs reported (name -> sha256:...)."""

    registry: Registry
    digests: dict[str, str] = field(default_factory=dict)


def pull_published(
    config: RunConfig, engine: Engine, contexts: list[BuildContext], handoff: Handoff, say: Callable[[str], None]
) -> None:
    """Pull each of `contexts` the engine lacks and the registry has under its content tag. One
    the registry lacks is left to the build, unless a digest was expected for it."""
    project, registry = config.project, handoff.registry
    for context in contexts:
        name = context.rendered.plan.name
        expected = handoff.digests.get(name)
        local = content_ref(project, name, context.content_hash)
        if engine.image(local) is not None and expected is None:
            continue
        repository, tag = registry_repository(project, name), f"sha-{context.short_hash}"
        where = f"{registry.host}/{repository}:{tag}"
        published = registry.image(repository, tag)
        if published is None:
            if expected is not None:
                raise PublishError(
                    f"{name}: {where} is not in the registry, but its job reported pushing {expected}",
                    hint="run the parent's job first (the matrix's needs), with the same recipes and --registry",
                )
            continue
        if published.labels.get(HASH_LABEL) != context.content_hash:
            raise PublishError(
                f"{name}: {where} carries content hash {published.labels.get(HASH_LABEL, 'none')[:12]}, not {context.short_hash}",
                hint="something else was pushed under that tag; push the image again from a build of these recipes",
            )
        if expected is not None and published.digest != expected:
            raise PublishError(
                f"{name}: {where} is {published.digest}, but its job pushed {expected}; refusing to build on it",
                hint="the tag was replaced since the parent's job ran: run that job again",
            )
        say(f"pulling {name} from {where} ({published.digest[:19]}) instead of building it")
        remote = f"{registry.host}/{repository}@{published.digest}"
        if not engine.try_pull(remote, config.registry_login) or (image := engine.image(remote)) is None:
            raise PublishError(f"{name}: pulling {remote} failed", hint="check the registry and its credentials")
        engine.tag(image, local)
        engine.tag(image, latest_ref(project, name))
