"""Root images without a registry: pull when the engine can, otherwise bootstrap the root
file system from a Debian archive with debootstrap and import it under the same reference."""

import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from imagebuild.engine import Engine
from imagebuild.errors import EngineError
from imagebuild.system import apt_install, cache_dir, run

DEFAULT_ARCHIVE = "http://deb.debian.org/debian"
BOOTSTRAP_PACKAGES = ["debootstrap"]


def host_archive(sources: Path = Path("/etc/apt")) -> str:
    """The first Debian archive (not the security one) named by the host's apt sources."""
    candidates: list[str] = []
    for path in sorted(sources.glob("sources.list.d/*.sources")):
        candidates += re.findall(r"^URIs:\s*(\S+)", path.read_text(), flags=re.MULTILINE)
    listing = sources / "sources.list"
    if listing.is_file():
        candidates += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", listing.read_text(), flags=re.MULTILINE)
    archives = [url for url in candidates if "security" not in url and "/debian" in url]
    return archives[0].rstrip("/") if archives else DEFAULT_ARCHIVE


def debian_suite(ref: str) -> str | None:
    """'debian:bookworm' -> 'bookworm'; None for anything imagebuild cannot bootstrap."""
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?debian:([a-z]+)", ref)
    return match.group(1) if match else None


def ensure_root_image(engine: Engine, ref: str, archive: str, say: Callable[[str], None]) -> str:
    """Make `ref` present in the engine; returns its image ID."""
    present = engine.image(ref)
    if present is not None:
        return present.id
    if engine.try_pull(ref):
        say(f"pulled root image {ref}")
        return engine.image(ref).id  # type: ignore[union-attr]
    suite = debian_suite(ref)
    if suite is None:
        raise EngineError(
            f"root image '{ref}' cannot be pulled and imagebuild bootstraps only debian:<suite>",
            hint="load the image yourself (docker load) or use a debian:<suite> root",
        )
    tarball = _rootfs_tarball(suite, archive, say)
    say(f"importing {tarball.name} as {ref}")
    image = engine.import_rootfs(
        tarball,
        ref,
        changes=[
            'CMD ["bash"]',
            "ENV LANG=C.UTF-8",
            f"LABEL io.imagebuild.bootstrapped-from={archive} io.imagebuild.suite={suite}",
        ],
    )
    return image.id


def _rootfs_tarball(suite: str, archive: str, say: Callable[[str], None]) -> Path:
    """A cached tar of a minbase root file system; written atomically, never half present."""
    key = hashlib.sha256(f"{suite} {archive}".encode()).hexdigest()[:12]
    folder = cache_dir() / "rootfs"
    folder.mkdir(exist_ok=True)
    tarball = folder / f"debian-{suite}-{key}.tar"
    if tarball.is_file():
        return tarball
    log = folder / f"debian-{suite}-{key}.log"
    if shutil.which("debootstrap") is None:
        say(f"installing {', '.join(BOOTSTRAP_PACKAGES)} on the host (log: {log})")
        apt_install(BOOTSTRAP_PACKAGES, log=log)
    say(f"bootstrapping debian:{suite} from {archive} (log: {log})")
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        rootfs = Path(scratch) / "rootfs"
        run(["debootstrap", "--variant=minbase", suite, str(rootfs), archive], log=log)
        (rootfs / "etc/apt/sources.list").write_text(
            f"deb {archive} {suite} main\ndeb {archive} {suite}-updates main\n"
        )
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        partial = Path(scratch) / "rootfs.tar"
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], log=log)
        partial.rename(tarball)
    return tarball
