"""Step 6, assemble context: a deterministic tar of exactly what the Dockerfile copies,
and the content hash that decides whether an image must be built at all."""

import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

from imagebuild.build.render import ContextFile, RenderedImage
from imagebuild.errors import RecipeError

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


def context_files(tar: bytes, *, where: str) -> tuple[ContextFile, ...]:
    """Every regular file of a context tar, by name, without git metadata (.git); `where` names
    the tar's origin in the error about a link, which imagebuild's contexts cannot hold."""
    files = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if ".git" in Path(member.name).parts or member.isdir():
                continue
            if not member.isfile():
                raise RecipeError(
                    f"{where}: '{member.name}' is a link; imagebuild's build contexts hold regular files only",
                    hint="replace the link with the file in the repository, or leave it out in .dockerignore",
                )
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            files.append(ContextFile(member.name, data, member.mode & 0o7777))
    return tuple(sorted(files, key=lambda item: item.arcname))


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
