"""What a build run reports while it works and returns: the reporter, each image's outcome, and
where the run publishes (pipeline.py)."""

from collections.abc import Callable
from dataclasses import dataclass, replace

from imagebuild.build.smoke import SmokeResult
from imagebuild.config import RunConfig
from imagebuild.inputs.fetch import DownloadProgress, Fetcher, no_progress
from imagebuild.publish.push import PublishResult


@dataclass(frozen=True)
class Reporter:
    """How the pipeline talks: `say` for events, `step` for the current build step, and
    `progress` for a download (a bar on a terminal)."""

    say: Callable[[str], None]
    step: Callable[[str], None]
    progress: DownloadProgress = no_progress

    def fetcher(self, config: RunConfig) -> Fetcher:
        return Fetcher(config, self.say, self.progress)

    def prefixed(self, name: str) -> "Reporter":
        """This reporter with every line of image `name` prefixed, for builds that run side by side."""
        return replace(self, say=lambda message: self.say(f"[{name}] {message}"), step=lambda message: self.step(f"[{name}] {message}"))


@dataclass(frozen=True)
class ImageOutcome:
    name: str
    content_hash: str
    ref: str
    image_id: str
    action: str  # "built" or "reused"
    seconds: float
    smoke: SmokeResult | None
    published: PublishResult | None = None


@dataclass(frozen=True)
class Publishing:
    """Where and which smoke-tested images of a run are pushed (none without a registry)."""

    registry: str | None
    moving_tag: str
    names: set[str]

    def wants(self, name: str) -> bool:
        return self.registry is not None and name in self.names
