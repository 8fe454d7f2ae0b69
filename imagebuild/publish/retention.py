"""Retention: which published images of a repository a nightly run deletes, so a registry that
gets a new image every night does not grow without bound.

Kept: the newest image of each of the newest `keep_daily` days and of each of the newest
`keep_monthly` months; every image a moving tag (latest, edge) names; every image a hub offers
(its digest in a hub's images.toml), whatever its age; and images of unknown age. Images are
deleted by digest, which removes every tag naming them (date, content and version tags alike).
"""

from dataclasses import dataclass

from imagebuild.publish.push import CREATED_LABEL
from imagebuild.publish.registry import Registry
from imagebuild.publish.tags import MOVING_TAGS


@dataclass(frozen=True)
class RetentionPolicy:
    keep_daily: int
    keep_monthly: int


@dataclass(frozen=True)
class PublishedImage:
    """One manifest of a repository with every tag naming it."""

    digest: str
    created: str  # ISO time from the image's labels; "" when unknown
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Deletion:
    repository: str
    digest: str
    created: str
    tags: tuple[str, ...]


def published_images(registry: Registry, repository: str) -> list[PublishedImage]:
    """Every manifest of `repository`, grouping the tags that name it."""
    tags: dict[str, list[str]] = {}
    created: dict[str, str] = {}
    for tag in registry.tags(repository):
        image = registry.image(repository, tag)
        if image is None:
            continue
        tags.setdefault(image.digest, []).append(tag)
        created[image.digest] = image.labels.get(CREATED_LABEL) or image.created or ""
    return [PublishedImage(digest, created[digest], tuple(sorted(names))) for digest, names in tags.items()]


def to_delete(images: list[PublishedImage], policy: RetentionPolicy, protected: set[str]) -> list[PublishedImage]:
    """The images `policy` lets go, oldest first; never one whose digest is in `protected`."""
    keep = set(protected)
    days: set[str] = set()
    months: set[str] = set()
    for image in sorted(images, key=lambda i: i.created, reverse=True):
        if not image.created:
            keep.add(image.digest)
            continue
        if any(tag in MOVING_TAGS for tag in image.tags):
            keep.add(image.digest)
        day, month = image.created[:10], image.created[:7]
        if day not in days and len(days) < policy.keep_daily:
            keep.add(image.digest)
        if month not in months and len(months) < policy.keep_monthly:
            keep.add(image.digest)
        days.add(day)
        months.add(month)
    return sorted((i for i in images if i.digest not in keep), key=lambda i: i.created)


def apply(registry: Registry, repository: str, policy: RetentionPolicy, protected: set[str]) -> list[Deletion]:
    """Delete what `policy` lets go in `repository`; returns what was deleted."""
    deleted = []
    for image in to_delete(published_images(registry, repository), policy, protected):
        registry.delete(repository, image.digest)
        deleted.append(Deletion(repository, image.digest, image.created, image.tags))
    return deleted
