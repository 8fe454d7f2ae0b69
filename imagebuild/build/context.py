"""Step 6, assemble context: a deterministic tar of exactly what the Dockerfile copies,
and the content hash that decides whether an image must be built at all."""

import hashlib
import io
import tarfile
from dataclasses import dataclass, replace

from imagebuild.build.buildenv import without_mounts
from imagebuild.build.render import ContextFile, RenderedImage

HASH_LABEL = "io.imagebuild.content-hash"
IMAGE_LABEL = "io.imagebuild.image"


@dataclass(frozen=True)
class BuildContext:
    rendered: RenderedImage
    tar: bytes
    content_hash: str

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]

    def classic_tar(self) -> bytes:
        """The context the classic builder gets: the Dockerfile without imagebuild's BuildKit
        mounts (buildenv.without_mounts); the content hash stays the rendered one's."""
        classic = without_mounts(self.rendered.dockerfile)
        return self.tar if classic == self.rendered.dockerfile else assemble(replace(self.rendered, dockerfile=classic)).tar


def content_hash(rendered: RenderedImage) -> str:
    """sha256 over the Dockerfile, every context file (name, mode, bytes), the build arguments and
    the smoke notebooks.

    The parent's hash is covered because the Dockerfile's FROM names the parent by its hash.
    """
    digest = hashlib.sha256()
    digest.update(b"dockerfile\0" + rendered.dockerfile.encode())
    for item in sorted(rendered.files, key=lambda f: f.arcname):
        digest.update(f"\0file\0{item.arcname}\0{item.mode:o}\0".encode())
        digest.update(hashlib.sha256(item.data).digest())
    for name, value in rendered.build_args:
        digest.update(f"\0arg\0{name}\0{value}".encode())
    for notebook in rendered.plan.recipe.notebooks:
        digest.update(f"\0smoke\0{notebook.name}\0".encode())
        digest.update(hashlib.sha256(notebook.read_bytes()).digest())
    return digest.hexdigest()


def _add(archive: tarfile.TarFile, item: ContextFile) -> None:
    info = tarfile.TarInfo(item.arcname)
    info.size = len(item.data)
    info.mode = item.mode
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    archive.addfile(info, io.BytesIO(item.data))


def assemble(rendered: RenderedImage) -> BuildContext:
    everything = [ContextFile("Dockerfile", rendered.dockerfile.encode()), *rendered.files]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for item in sorted(everything, key=lambda f: f.arcname):
            _add(archive, item)
    return BuildContext(rendered=rendered, tar=buffer.getvalue(), content_hash=content_hash(rendered))
