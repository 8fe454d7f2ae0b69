"""Development packages: a package at a git ref, pinned to a commit by `imagebuild lock` and
built into a wheel here on the host, so the image build needs no git access and an image
can always say which commit it carries.

Git runs with the mirror profile's [git] rewrites (and credentials) as `url.insteadOf`
settings given through the environment, never written into a config file.
"""

import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    parse_wheel_filename,
)
from uv import find_uv_bin

from imagebuild.config import Logins
from imagebuild.errors import LockError
from imagebuild.mirrors.hostenv import git_variables, index_variables, trust_variables
from imagebuild.model.mirror import Mirror
from imagebuild.model.recipe_schema import DevPackageSpec
from imagebuild.model.toml import StrictModel
from imagebuild.system import Completed, run

COMMIT = re.compile(r"[0-9a-f]{40}")
GIT_TIMEOUT = 300
WHEEL_TIMEOUT = 1800
"""A wheel build may compile extensions; a hung one fails instead of blocking the lock."""


class LockedDevPackage(StrictModel):
    """A dev package as a lock records it: the ref the recipe names and the commit it meant."""

    name: str
    url: str
    ref: str
    commit: str

    def describe(self) -> str:
        return f"{self.name} {self.ref} @ {self.commit[:12]} ({self.url})"


def host_environment(
    environ: Mapping[str, str], mirror: Mirror | None, logins: Logins, ca_file: Path | None
) -> dict[str, str]:
    """git and uv on this host (`environ` is the command's own environment): the mirror's git
    rewrites and index with their credentials, and the run's one CA bundle for both."""
    env = {**environ, "GIT_TERMINAL_PROMPT": "0"}
    if mirror is not None:
        env.update(git_variables(mirror, logins))
        env.update(index_variables(mirror, logins))
    if ca_file is not None:
        env.update(trust_variables(ca_file))
    return env


def _git(args: list[str], env: dict[str, str], *, cwd: Path | None = None) -> Completed:
    """git, its exit code and output left to the caller, which words the error."""
    return run(["git", *args], cwd=cwd, env=env, timeout=GIT_TIMEOUT, check=False, error=LockError)


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def resolve(spec: DevPackageSpec, env: dict[str, str], *, what: str | None = None) -> LockedDevPackage:
    """The commit `spec.ref` names now: a branch, then a tag (peeled), then a full ref name.

    `what` names the repository in errors (default: the dev package).
    """
    what = what or f"dev package '{spec.name}'"
    listing = _git(["ls-remote", spec.url], env)
    if listing.returncode != 0:
        raise LockError(
            f"{what}: cannot read git repository {spec.url} (ref '{spec.ref}'): "
            f"{_last_line(listing.stderr)}",
            hint="check the URL and your access; behind a filtered network add a [git] rewrite to the mirror profile",
        )
    refs = {name: commit for commit, _, name in (line.partition("\t") for line in listing.stdout.splitlines() if "\t" in line)}
    if COMMIT.fullmatch(spec.ref):
        return LockedDevPackage(name=spec.name, url=spec.url, ref=spec.ref, commit=spec.ref)
    for candidate in (f"refs/heads/{spec.ref}", f"refs/tags/{spec.ref}^{{}}", f"refs/tags/{spec.ref}", spec.ref):
        if candidate in refs:
            return LockedDevPackage(name=spec.name, url=spec.url, ref=spec.ref, commit=refs[candidate])
    branches = sorted(name.removeprefix("refs/heads/") for name in refs if name.startswith("refs/heads/"))
    shown = ", ".join(branches[:10]) + (" ..." if len(branches) > 10 else "")
    raise LockError(
        f"{what}: no branch or tag '{spec.ref}' in {spec.url}",
        hint=f"branches there: {shown or '(none)'}; correct 'ref' in the recipe",
    )


def _key(package: LockedDevPackage) -> str:
    return hashlib.sha256(package.url.encode()).hexdigest()[:16]


def cached_wheel(package: LockedDevPackage, wheels: Path) -> Path | None:
    """The wheel built earlier from this commit, if this host has it (under `wheels`)."""
    folder = wheels / f"{_key(package)}-{package.commit}"
    found = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    return found[0] if found else None


def build_wheel(package: LockedDevPackage, cache: Path, env: dict[str, str], say: Callable[[str], None]) -> Path:
    """The wheel of `package` at its commit, built once per commit and kept in the host `cache`."""
    found = cached_wheel(package, cache / "dev-wheels")
    if found is not None:
        return found
    say(f"building a wheel of {package.describe()}")
    final = cache / "dev-wheels" / f"{_key(package)}-{package.commit}"
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix="building-") as scratch:
        source, dist = Path(scratch) / "source", Path(scratch) / "dist"
        checkout(package, cache, env, source)
        epoch = _git(["log", "-1", "--format=%ct", package.commit], env, cwd=source).stdout.strip()
        built = run(
            [find_uv_bin(), "build", "--wheel", "--python", sys.executable, "--out-dir", str(dist), str(source)],
            env={**env, "SOURCE_DATE_EPOCH": epoch or "315532800"},
            timeout=WHEEL_TIMEOUT,
            check=False,
            error=LockError,
        )
        if built.returncode != 0:
            raise LockError(
                f"dev package '{package.name}': building a wheel at {package.commit[:12]} failed: {_last_line(built.stderr)}",
                hint=f"the repository {package.url} at ref '{package.ref}' must be a Python project (pyproject.toml or setup.py)",
            )
        (wheel,) = dist.glob("*.whl")
        _check_name(package, wheel)
        staged = Path(scratch) / "wheel"
        staged.mkdir()
        shutil.move(wheel, staged / wheel.name)
        os.replace(staged, final)
    return final / wheel.name


def _repository(package: LockedDevPackage, cache: Path, env: dict[str, str], *, offline: bool = False) -> Path:
    """The bare repository in the host `cache` that holds the package's commit, fetched into
    unless it already does (or, `offline`, an error saying how to fetch it)."""
    repository = cache / "git" / f"{_key(package)}.git"
    if not repository.is_dir():
        _check(_git(["init", "--quiet", "--bare", str(repository)], env), package, "create the local clone")
    if _git(["cat-file", "-e", f"{package.commit}^{{commit}}"], env, cwd=repository).returncode != 0:
        if offline:
            raise LockError(
                f"'{package.name}': commit {package.commit[:12]} of {package.url} is not on this host",
                hint="run 'imagebuild assets fetch' once while online; it fetches the locked commits",
            )
        fetched = _git(["fetch", "--quiet", "--no-tags", package.url, package.commit], env, cwd=repository)
        _check(fetched, package, f"fetch commit {package.commit}")
    return repository


def checkout(package: LockedDevPackage, cache: Path, env: dict[str, str], folder: Path) -> None:
    """A work tree of `package` at its commit in `folder`, from the bare repository kept in the
    host `cache`."""
    repository = _repository(package, cache, env)
    _check(_git(["clone", "--quiet", "--shared", "--no-checkout", str(repository), str(folder)], env), package, "clone")
    _check(_git(["checkout", "--quiet", "--detach", package.commit], env, cwd=folder), package, "check out")


def archive(package: LockedDevPackage, cache: Path, env: dict[str, str], *, offline: bool) -> bytes:
    """The package's files at its commit as a tar (git archive: no .git), for a dev package's
    `checkout` folder in the image."""
    repository = _repository(package, cache, env, offline=offline)
    with tempfile.TemporaryDirectory(prefix="imagebuild-checkout-") as scratch:
        tar = Path(scratch) / "checkout.tar"
        _check(_git(["archive", "--format=tar", "--output", str(tar), package.commit], env, cwd=repository), package, "archive")
        return tar.read_bytes()


def _check(completed: Completed, package: LockedDevPackage, action: str) -> None:
    if completed.returncode != 0:
        raise LockError(
            f"'{package.name}': could not {action} from {package.url} "
            f"(ref '{package.ref}', commit {package.commit[:12]}): {_last_line(completed.stderr)}",
            hint="if the commit is gone upstream (a force-pushed branch), run 'imagebuild lock' to pin the ref again",
        )


def _check_name(package: LockedDevPackage, wheel: Path) -> None:
    try:
        name: str = parse_wheel_filename(wheel.name)[0]
    except InvalidWheelFilename:
        name = wheel.name
    if name != canonicalize_name(package.name):
        raise LockError(
            f"dev package '{package.name}': {package.url} builds '{name}', not '{package.name}'",
            hint=f"set name = \"{name}\" in the recipe's [[dev_packages]] entry",
        )
