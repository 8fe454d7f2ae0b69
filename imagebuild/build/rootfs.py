"""Root images without a registry: pull when the engine can (through the mirror profile's
registry mirror when it has one), otherwise bootstrap the root file system from a Debian
archive (or the profile's apt mirror of it) with debootstrap and import it under the same
reference. Either way the image's own apt sources name the upstream archive."""

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from imagebuild.build.engine import Engine
from imagebuild.config import Logins, RunConfig
from imagebuild.errors import EngineError
from imagebuild.inputs.target import debian_suite
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import Mirror
from imagebuild.model.routes import rewrite_image_ref, split_image_ref
from imagebuild.system import apt_install, run

BOOTSTRAP_PACKAGES = ["debootstrap"]


def bootstrap_source(archive: str, mirror: Mirror | None) -> str:
    """Where debootstrap downloads from: the mirror's copy of `archive`, else `archive` itself.

    No credentials here: debootstrap would print them in its log and errors.
    """
    if mirror is None:
        return archive
    return url_rules(mirror.spec, extra_debian_upstreams=(archive,)).only("apt").apply_line(archive)


def _pull(engine: Engine, ref: str, mirror: Mirror | None, logins: Logins, say: Callable[[str], None]) -> bool:
    """Pull `ref`, through the registry mirror when the profile has one (then tag it as `ref`),
    with the mirror's credentials for its host (`logins`, read by config.py)."""
    source = rewrite_image_ref(ref, mirror.spec.registry) if mirror else ref
    credentials = logins.get(split_image_ref(source)[0]) if mirror else None
    if not engine.try_pull(source, credentials) or (pulled := engine.image(source)) is None:
        return False
    if source != ref:
        engine.tag(pulled, ref)
    say(f"pulled root image {ref}" + (f" from {source}" if source != ref else ""))
    return True


def ensure_root_image(engine: Engine, ref: str, config: RunConfig, say: Callable[[str], None]) -> str:
    """Make `ref` present in the engine (pulled through the run's mirror, else bootstrapped from
    its Debian archive); returns its image ID."""
    if (present := engine.image(ref)) is not None:
        return present.id
    mirror, archive = config.mirror, config.debian_archive
    if _pull(engine, ref, mirror, config.logins(), say) and (pulled := engine.image(ref)) is not None:
        return pulled.id
    suite = debian_suite(ref)
    if suite is None:
        raise EngineError(
            f"root image '{ref}' cannot be pulled and imagebuild bootstraps only debian:<suite>",
            hint="load the image yourself (docker load) or use a debian:<suite> root",
        )
    tarball = _rootfs_tarball(suite, archive, bootstrap_source(archive, mirror), config.cache_dir / "rootfs", say)
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


def _rootfs_tarball(suite: str, archive: str, source: str, folder: Path, say: Callable[[str], None]) -> Path:
    """A cached tar of a minbase root file system whose sources name `archive`, downloaded from
    `source` (a mirror of it, or itself); written atomically, never half present. The cache key
    is the archive, not the source: a mirror serves the same packages."""
    key = hashlib.sha256(f"{suite} {archive}".encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    tarball = folder / f"debian-{suite}-{key}.tar"
    if tarball.is_file():
        return tarball
    log = folder / f"debian-{suite}-{key}.log"
    if shutil.which("debootstrap") is None:
        say(f"installing {', '.join(BOOTSTRAP_PACKAGES)} on the host (log: {log})")
        apt_install(BOOTSTRAP_PACKAGES, log=log)
    shown = archive if source == archive else f"{archive} through its mirror {source}"
    say(f"bootstrapping debian:{suite} from {shown} (log: {log})")
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        rootfs = Path(scratch) / "rootfs"
        run(["debootstrap", "--variant=minbase", suite, str(rootfs), source], log=log, timeout=3600)
        (rootfs / "etc/apt/sources.list").write_text(
            f"deb {archive} {suite} main\ndeb {archive} {suite}-updates main\n"
        )
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "var/lib/apt/lists/partial").mkdir(parents=True)
        partial = Path(scratch) / "rootfs.tar"
        run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], log=log, timeout=600)
        partial.rename(tarball)
    return tarball
