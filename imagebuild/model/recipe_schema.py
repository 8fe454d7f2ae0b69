"""Step 1, load: the schema of image.toml, section by section, and RecipeFile that holds them.

A new recipe section is a model here and a field of RecipeFile; load_recipe (recipe.py) checks
the files it names, and render.py (and the Dockerfile template) put it into the image.
"""

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import AfterValidator, Field, field_validator, model_validator

from imagebuild.model.external_schema import (
    EXTERNAL_KINDS,
    DockerfileSpec,
    GitRef,
    SourceSpec,
    one_line_values,
)
from imagebuild.model.names import (
    AptPackage,
    GitUrl,
    ImageReference,
    OneLine,
    PathInImage,
    env_names,
    file_mode,
    web_url,
)
from imagebuild.model.toml import StrictModel


class OsSection(StrictModel):
    packages: list[AptPackage] = Field(default=[], description="Debian packages installed with apt-get")
    packages_file: str | None = Field(default=None, description="an apt.txt beside the recipe, one package a line")
    locales: list[str] = Field(
        default=[], description="UTF-8 locales generated in the image, e.g. 'en_US.UTF-8' (PostgreSQL databases ask for one)"
    )

    @field_validator("locales")
    @classmethod
    def _utf8_locales(cls, locales: list[str]) -> list[str]:
        for locale in locales:
            if not re.fullmatch(r"[a-z]{2,3}_[A-Z]{2}(@[a-z]+)?\.UTF-8", locale):
                raise ValueError(f"'{locale}' is not a UTF-8 locale name; write it like 'en_US.UTF-8'")
        return locales


def _prefix_not_interpreter(value: str) -> str:
    """The environment's folder: `bin/python` is appended to it, so the interpreter's own path is refused."""
    folder, _, program = value.rstrip("/").rpartition("/bin/")
    if folder and re.fullmatch(r"python[0-9.]*", program):
        raise ValueError(f"{value!r} is the interpreter; name the environment's folder, the one holding bin/python: {folder!r}")
    return value


class PythonSection(StrictModel):
    requirements: str | None = Field(default=None, description="a requirements.txt beside the recipe")
    venv: PathInImage = Field(default="/opt/venv", description="virtual environment created by root images")
    environment: Annotated[PathInImage, AfterValidator(_prefix_not_interpreter)] | None = Field(
        default=None,
        description="on a dockerfile parent: where its Python lives, a venv or a conda prefix (default /opt/venv)",
    )
    parent_pins: Literal["hold", "move"] = Field(
        default="hold",
        description="'hold': the parents' locked versions are fixed; 'move': kept where they fit, moved where this "
        "image's requirements need another version (the lock says which)",
    )


def _inside_recipe(relative: str) -> str:
    if relative.startswith("/") or ".." in Path(relative).parts:
        raise ValueError(f"{relative!r} must be a path relative to the recipe folder, without '..'; copy the file there")
    return relative


class FileCopy(StrictModel):
    src: Annotated[str, AfterValidator(_inside_recipe)] = Field(description="a file in the recipe folder")
    dest: PathInImage = Field(description="where it goes in the image: an absolute path")
    mode: Annotated[str, AfterValidator(file_mode)] = Field(default="0644", description="octal permissions, e.g. '0755'")


def _relative_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        _inside_recipe(pattern)
    return patterns


Patterns = Annotated[list[str], AfterValidator(_relative_patterns)]


class HooksSection(StrictModel):
    before_notebook: Patterns = Field(
        default=["before-notebook.d/*.sh"], description="start hooks run before the single-user server (patterns)"
    )


class SmokeSection(StrictModel):
    notebooks: Patterns = Field(default=["smoke/*.ipynb"], description="notebooks executed inside the image (patterns)")
    cell_timeout: int = Field(default=600, gt=0, description="seconds one cell may run")
    needs_asset: dict[str, str] = Field(
        default={},
        description="notebook -> the optional asset it needs; in an image built without that asset it is reported skipped",
    )


class CondaSection(StrictModel):
    environment: str | None = Field(default=None, description="an environment.yml beside the recipe")
    prefix: PathInImage = Field(default="/opt/conda", description="where the environment is installed; its bin/ is on PATH")


class CaSection(StrictModel):
    keep: bool = Field(default=False, description="leave the build's CA bundle in the image for runtime use")


SHA256 = re.compile(r"[0-9a-f]{64}")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _plain_name(value: str) -> str:
    if not NAME.fullmatch(value):
        raise ValueError(f"must be letters, digits, '.', '_' or '-', got {value!r}")
    return value


Name = Annotated[str, AfterValidator(_plain_name)]


def _recipe_name(value: str) -> str:
    """A parent is a recipe of the project; an image reference there is the usual mix-up."""
    if ("/" in value or ":" in value) and not NAME.fullmatch(value):
        recipe = value.rsplit("/", 1)[-1].split(":", 1)[0]
        raise ValueError(
            f"{value!r} is an image reference; parent names a recipe of this project, a folder under images/ "
            f"(such as '{recipe}'); to build on an image that is not a recipe, write a dockerfile recipe FROM it"
        )
    return _plain_name(value)


def _download_urls(urls: list[str]) -> list[str]:
    for url in urls:
        web_url(url, schemes=("http", "https", "file"))
    return urls


class AssetSpec(StrictModel):
    """A file the image needs that is not a pip package: fetched and verified on the host, never in the build."""

    name: Name = Field(description="unique in the project; `imagebuild assets fetch NAME` uses it")
    urls: Annotated[list[str], AfterValidator(_download_urls)] = Field(
        default=[], description="where to download it (http, https or file URLs), tried in order; empty: added by hand only"
    )
    sha256: str = Field(description="the file's sha256; a file with another checksum is refused")
    filename: str | None = Field(default=None, description="its file name; default: the last part of the first URL")
    dest: PathInImage = Field(default="/opt/assets", description="folder in the image it is put or unpacked into")
    unpack: bool = Field(default=False, description="unpack the archive (zip, tar, tar.gz, tar.bz2, tar.xz) into dest")
    wheel: bool = Field(default=False, description="a Python wheel installed into the image's environment")
    conda: bool = Field(default=False, description="a conda package (.conda, .tar.bz2) offered to the image's conda solver")
    install: str | None = Field(default=None, description="a shell command that installs it; $ASSET_PATH is where it is")
    install_at: Literal["build", "start"] = Field(
        default="build", description="run `install` while building, or once per user at first start (a start hook)"
    )
    optional: bool = Field(default=False, description="build without it (with a warning) when it cannot be had")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.lower().removeprefix("sha256:")
        if not SHA256.fullmatch(value):
            raise ValueError("must be 64 hexadecimal digits (run `sha256sum FILE`)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "AssetSpec":
        if self.filename is None and not self.urls:
            raise ValueError("give 'filename' when there are no 'urls' (an asset added by hand)")
        name = self.file_name
        if "/" in name or name in ("", ".", "..") or any(c in name for c in "\n\r\x00"):
            raise ValueError(f"filename must be a plain file name, got {name!r}")
        if self.wheel and (self.unpack or not name.endswith(".whl")):
            raise ValueError("a wheel asset needs a file name ending in .whl and unpack = false")
        if self.conda and (self.unpack or self.wheel or not name.endswith((".conda", ".tar.bz2"))):
            raise ValueError("a conda asset needs a file name ending in .conda or .tar.bz2, unpack = false and wheel = false")
        if self.install_at == "start" and self.install is None:
            raise ValueError("install_at = 'start' needs an 'install' command")
        return self

    @property
    def file_name(self) -> str:
        return self.filename or unquote(urlsplit(self.urls[0]).path.rsplit("/", 1)[-1])

    @property
    def path_in_image(self) -> str:
        """Where $ASSET_PATH points: the unpacked folder, or the file itself."""
        return self.dest if self.unpack else f"{self.dest.rstrip('/')}/{self.file_name}"


class DevPackageSpec(StrictModel):
    """A Python package built from a git commit: `imagebuild lock` turns the ref into a commit."""

    name: Name = Field(description="its distribution name, e.g. 'aiida-core'")
    url: GitUrl = Field(description="the git repository, e.g. 'https://github.com/aiidateam/aiida-core.git'")
    ref: GitRef = Field(description="a branch, tag or commit")
    checkout: PathInImage | None = Field(
        default=None,
        description="also put the repository's files at the commit here, symbolic links left out (what the wheel "
        "leaves out, e.g. an app's notebooks)",
    )


TAG_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class TagsSection(StrictModel):
    """Version tags read from inside the built image, in the style of jupyter/docker-stacks taggers."""

    packages: list[str] = Field(default=[], description="Python distributions: tag '<name>-<version>'")
    commands: dict[str, str] = Field(default={}, description="tag prefix -> shell command printing the version")

    @field_validator("packages")
    @classmethod
    def _package_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not TAG_PREFIX.fullmatch(name):
                raise ValueError(f"must be a distribution name usable in a tag, got {name!r}")
        return names

    @field_validator("commands")
    @classmethod
    def _prefixes(cls, commands: dict[str, str]) -> dict[str, str]:
        for prefix in commands:
            if not TAG_PREFIX.fullmatch(prefix):
                raise ValueError(f"tag prefix {prefix!r} must be letters, digits, '_', '.', '-' (64 at most)")
        return commands


class RecipeFile(StrictModel):
    """The schema of images/<name>/image.toml."""

    description: OneLine = ""
    source: SourceSpec | None = Field(default=None, description="a Binder repository repo2docker builds instead of layers")
    parent: Annotated[str, AfterValidator(_recipe_name)] | None = Field(default=None, description="another recipe (a folder name under images/) this image builds on")
    root: ImageReference | None = Field(default=None, description="a root image reference such as 'debian:bookworm'")
    dockerfile: DockerfileSpec | None = Field(default=None, description="an existing Dockerfile built instead of layers")
    post_build: str | None = Field(default=None, description="a postBuild script run as the user")
    os: OsSection = OsSection()
    python: PythonSection = PythonSection()
    conda: CondaSection = CondaSection()
    env: Annotated[dict[str, str], AfterValidator(env_names), AfterValidator(one_line_values)] = Field(
        default={}, description="environment variables of the image: NAME = value"
    )
    files: list[FileCopy] = Field(default_factory=list)
    hooks: HooksSection = HooksSection()
    smoke: SmokeSection = SmokeSection()
    labels: Annotated[dict[str, str], AfterValidator(one_line_values)] = Field(default={}, description="image labels")
    ca: CaSection = CaSection()
    assets: list[AssetSpec] = Field(default_factory=list)
    dev_packages: list[DevPackageSpec] = Field(default_factory=list)
    tags: TagsSection = TagsSection()

    @property
    def git_source(self) -> SourceSpec | None:
        """The repository `imagebuild lock` pins for this recipe: its [source], or its Dockerfile's repo."""
        if self.dockerfile is not None and self.dockerfile.repo is not None:
            return SourceSpec(repo=self.dockerfile.repo, ref=self.dockerfile.ref)
        return self.source

    @model_validator(mode="after")
    def _unique_names(self) -> "RecipeFile":
        for what, items in (("assets", self.assets), ("dev_packages", self.dev_packages)):
            names = [item.name for item in items]
            twice = sorted({name for name in names if names.count(name) > 1})
            if twice:
                raise ValueError(f"[[{what}]]: the name {twice[0]!r} is used twice")
        return self

    @model_validator(mode="after")
    def _one_base(self) -> "RecipeFile":
        for kind in EXTERNAL_KINDS:
            if getattr(self, kind.field) is None:
                continue
            extra = sorted(self.model_fields_set - kind.allowed)
            if extra:
                raise ValueError(f"{kind.name} is built {kind.built} alone; remove {', '.join(extra)} ({kind.instead})")
            if self.smoke.needs_asset:
                raise ValueError(f"[smoke].needs_asset: {kind.name} has no assets")
            return self
        if (self.parent is None) == (self.root is None):
            raise ValueError(
                "set exactly one of 'parent' (another recipe), 'root' (e.g. 'debian:bookworm'), [source] (a Binder "
                "repository) or 'dockerfile' (an existing Dockerfile)"
            )
        return self
