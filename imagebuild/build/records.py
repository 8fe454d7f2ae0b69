"""What the engine answers with: frozen records of images and containers, and the reading of a
push stream. Kept apart from build/engine.py (the one module that imports docker) so callers
and tests hold these without an engine or the SDK."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Image:
    """An image in the engine: its ID, its tags (repository:tag), its labels and its size in bytes."""

    id: str
    tags: tuple[str, ...]
    labels: dict[str, str]
    size: int


@dataclass(frozen=True)
class EngineStatus:
    reachable: bool
    detail: str
    version: str | None = None


@dataclass(frozen=True)
class ContainerRun:
    """What a throwaway container left behind: its exit status (None when it was still running
    at the time limit), its output, and the one file asked back (None if it wrote none)."""

    exit_status: int | None
    logs: str
    collected: bytes | None


@dataclass(frozen=True)
class ContainerInfo:
    """What `hub status` and `hub up` need to know of a container."""

    id: str
    name: str
    image: str
    state: str  # running, exited, restarting, ...
    health: str  # healthy, starting, unhealthy, or "" without a health check
    started_at: str
    restarts: int
    labels: dict[str, str]
    environment: dict[str, str]

    @classmethod
    def of(cls, attrs: dict[str, Any]) -> "ContainerInfo":
        """From the engine's inspection of the container."""
        state, config = attrs["State"], attrs["Config"]
        return cls(
            id=attrs["Id"],
            name=attrs["Name"].lstrip("/"),
            image=config["Image"],
            state=state["Status"],
            health=(state.get("Health") or {}).get("Status", ""),
            started_at=state.get("StartedAt", ""),
            restarts=attrs.get("RestartCount", 0),
            labels=config.get("Labels") or {},
            environment=dict(item.split("=", 1) for item in config.get("Env") or [] if "=" in item),
        )


class PushFailure(Exception):
    """A push the engine did not complete; the message is the engine's."""


def pushed_digest(stream: Iterable[dict[str, Any]]) -> str:
    """The digest a push stream reports; a failure reported inside the stream raises PushFailure."""
    digest = None
    for item in stream:
        if "errorDetail" in item or "error" in item:
            detail = item.get("errorDetail") or {}
            raise PushFailure(str(detail.get("message") or item.get("error")).strip())
        digest = (item.get("aux") or {}).get("Digest", digest)
    if not isinstance(digest, str):
        raise PushFailure("the engine finished the push without reporting a digest")
    return digest
