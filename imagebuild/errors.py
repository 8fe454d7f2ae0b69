"""One small family of errors; only the CLI turns them into messages and exit codes."""

from pathlib import Path

UNKNOWN_HOST = "Name or service not known"
_CONNECTION_FAILURES = (
    UNKNOWN_HOST,
    "Connection refused",
    "timed out",
    "Temporary failure in name resolution",
)


def connection_reason(error: BaseException) -> str:
    """A short reason for a failed HTTP request (requests/urllib3 bury it in a long message)."""
    text = str(error)
    for marker in _CONNECTION_FAILURES:
        if marker in text:
            return marker.lower()
    response = getattr(error, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    return text.splitlines()[0][:200] if text else type(error).__name__


class ImagebuildError(Exception):
    """An error the user can act on: where it happened, what is wrong, what to try."""

    exit_code = 1

    def __init__(self, message: str, *, path: Path | str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.path = path
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.path}: " if self.path else ""
        tail = f"\n  hint: {self.hint}" if self.hint else ""
        return f"{where}{self.message}{tail}"


class RecipeError(ImagebuildError):
    """A recipe or project file is malformed or refers to something missing."""

    exit_code = 2


class EngineError(ImagebuildError):
    """No usable Docker engine, or the engine refused an operation."""

    exit_code = 3


class BuildError(ImagebuildError):
    """The image build failed; carries the failing step and the last log lines."""

    exit_code = 4


class SmokeError(ImagebuildError):
    """A smoke notebook failed inside the built image."""

    exit_code = 5


class MirrorError(ImagebuildError):
    """A mirror the build needs does not answer."""

    exit_code = 6


class AssetError(ImagebuildError):
    """An offline asset is missing, corrupt or cannot be fetched."""

    exit_code = 7


class LockError(ImagebuildError):
    """A lock is stale or cannot be written: a dev package's repository or ref, or the resolver."""

    exit_code = 8


class PublishError(ImagebuildError):
    """A push, a registry question or the hub's image selection failed; nothing was recorded."""

    exit_code = 9


class HubError(ImagebuildError):
    """The hub did not come up (a service failed or never answered); nothing was left running."""

    exit_code = 10
