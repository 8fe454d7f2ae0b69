"""Step 1, load: the typed files a user writes (image recipes, project config).

Every model forbids unknown keys, so a typo is an error that names the file and the
key instead of a setting that silently does nothing.
"""

import difflib
import glob
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from imagebuild.errors import RecipeError

RECIPE_FILE = "image.toml"
PROJECT_FILE = "imagebuild.toml"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OsSection(StrictModel):
    packages: list[str] = Field(default=[], description="Debian packages installed with apt-get")
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


class PythonSection(StrictModel):
    requirements: str | None = Field(default=None, description="a requirements.txt beside the recipe")
    venv: str = Field(default="/opt/venv", description="virtual environment created by root images")


def _absolute(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"must be an absolute path in the image, got {path!r}")
    return path


PathInImage = Annotated[str, AfterValidator(_absolute)]


class FileCopy(StrictModel):
    src: str
    dest: PathInImage
    mode: str = "0644"

    @field_validator("mode")
    @classmethod
    def _octal(cls, mode: str) -> str:
        try:
            int(mode, 8)
        except ValueError:
            raise ValueError(f"must be an octal file mode such as '0755', got {mode!r}") from None
        return mode


class HooksSection(StrictModel):
    before_notebook: list[str] = Field(
        default=["before-notebook.d/*.sh"], description="start hooks run before the single-user server"
    )


class SmokeSection(StrictModel):
    notebooks: list[str] = Field(default=["smoke/*.ipynb"], description="notebooks executed inside the image")
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


class AssetSpec(StrictModel):
    """A file the image needs that is not a pip package: fetched and verified on the host, never in the build."""

    name: Name = Field(description="unique in the project; `imagebuild assets fetch NAME` uses it")
    urls: list[str] = Field(default=[], description="where to download it, tried in order; empty: added by hand only")
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

    @field_validator("urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https", "file"):
                raise ValueError(f"must be http, https or file URLs, got {url!r}")
        return urls

    @model_validator(mode="after")
    def _consistent(self) -> "AssetSpec":
        if self.filename is None and not self.urls:
            raise ValueError("give 'filename' when there are no 'urls' (an asset added by hand)")
        name = self.file_name
        if "/" in name or name in ("", ".", ".."):
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


def _git_ref(ref: str) -> str:
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise ValueError(f"must be a branch, tag or commit, got {ref!r}")
    return ref


GitRef = Annotated[str, AfterValidator(_git_ref)]


class DevPackageSpec(StrictModel):
    """A Python package built from a git commit: `imagebuild lock` turns the ref into a commit."""

    name: Name = Field(description="its distribution name, e.g. 'aiida-core'")
    url: str = Field(description="the git repository, e.g. 'https://github.com/aiidateam/aiida-core.git'")
    ref: GitRef = Field(description="a branch, tag or commit")


GIT_URL_SCHEMES = ("https", "http", "ssh", "git", "file")


class SourceSpec(StrictModel):
    """A Binder repository built by repo2docker instead of layers: `imagebuild lock` pins `ref` to a commit."""

    repo: str = Field(description="a git URL (https://, ssh://, git://, file://) or a folder relative to the recipe")
    ref: GitRef = Field(default="HEAD", description="a branch, tag or commit")

    @property
    def is_url(self) -> bool:
        return urlsplit(self.repo).scheme in GIT_URL_SCHEMES


SOURCE_FIELDS = {"description", "source", "smoke", "tags"}
"""What a source recipe may set: repo2docker decides base and layers, imagebuild smoke-tests and tags."""


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

    description: str = ""
    source: SourceSpec | None = Field(default=None, description="a Binder repository repo2docker builds instead of layers")
    parent: str | None = Field(default=None, description="another recipe this image builds on")
    root: str | None = Field(default=None, description="a root image reference such as 'debian:bookworm'")
    post_build: str | None = Field(default=None, description="a postBuild script run as the user")
    os: OsSection = OsSection()
    python: PythonSection = PythonSection()
    conda: CondaSection = CondaSection()
    env: dict[str, str] = {}
    files: list[FileCopy] = []
    hooks: HooksSection = HooksSection()
    smoke: SmokeSection = SmokeSection()
    labels: dict[str, str] = {}
    ca: CaSection = CaSection()
    assets: list[AssetSpec] = []
    dev_packages: list[DevPackageSpec] = []
    tags: TagsSection = TagsSection()

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
        if self.source is not None:
            layered = sorted(self.model_fields_set - SOURCE_FIELDS)
            if layered:
                raise ValueError(
                    f"a [source] recipe is built by repo2docker from the repository alone; remove {', '.join(layered)} "
                    "(put such settings in the repository's Binder files: apt.txt, requirements.txt, postBuild, ...)"
                )
            if self.smoke.needs_asset:
                raise ValueError("[smoke].needs_asset: a [source] recipe has no assets")
            return self
        if (self.parent is None) == (self.root is None):
            raise ValueError(
                "set exactly one of 'parent' (another recipe), 'root' (e.g. 'debian:bookworm') or [source] (a Binder repository)"
            )
        return self


class BootstrapSection(StrictModel):
    archive: str | None = Field(default=None, description="Debian archive URL; default: the host's apt sources")


class BuildSection(StrictModel):
    output: str = Field(default="build", description="folder for Dockerfiles, logs and smoke results")
    env_port: int = Field(
        default=47471, gt=0, lt=65536, description="loopback port serving the CA and mirror settings to builds"
    )
    mirror: str | None = Field(default=None, description="mirror profile used when --mirror is not given")
    repository: str = Field(default="imagebuild", description="local repository prefix of built images")


class PublishSection(StrictModel):
    registry: str = Field(
        default="127.0.0.1:5000", description="registry host[:port] images are pushed to (--registry overrides)"
    )


class NightlySection(StrictModel):
    """`imagebuild nightly`'s retention of published images (--keep-daily and friends override)."""

    upgrade: bool = Field(
        default=True, description="the lock refresh takes the newest Python pins; false keeps pins that still fit (dev refs move either way)"
    )
    keep_daily: int = Field(default=7, ge=1, description="keep the newest image of each of the newest N days")
    keep_monthly: int = Field(default=6, ge=0, description="and of each of the newest M months")
    prune: bool = Field(default=True, description="delete what the policy lets go (the registry must allow deletes)")
    hubs: list[str] = Field(default=[], description="hub folders (`hub init`) whose offered images are never deleted")


class ProjectConfig(StrictModel):
    """The schema of imagebuild.toml at the project root (all optional)."""

    images: str = "images"
    bootstrap: BootstrapSection = BootstrapSection()
    build: BuildSection = BuildSection()
    publish: PublishSection = PublishSection()
    nightly: NightlySection = NightlySection()


@dataclass(frozen=True)
class Recipe:
    """A validated recipe with every file it names resolved and checked to exist."""

    name: str
    path: Path
    spec: RecipeFile
    apt_packages: tuple[str, ...]
    requirements: Path | None
    post_build: Path | None
    conda_environment: Path | None
    files: tuple[tuple[Path, FileCopy], ...]
    hooks: tuple[Path, ...]
    notebooks: tuple[Path, ...]
    source: str | None = None
    """Where [source] is fetched from: its URL, or its folder as a file:// URL (repo2docker then fetches
    it with git at the locked commit, not as a working tree)."""

    @property
    def directory(self) -> Path:
        return self.path.parent


Model = TypeVar("Model", bound=BaseModel)


def _field(loc: tuple[int | str, ...]) -> str:
    """('python', 'requirements') -> '[python].requirements', as a user reads a TOML file."""
    if not loc:
        return "(top level)"
    if len(loc) == 1:
        return str(loc[0])
    rest = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    return f"[{loc[0]}]{rest}"


def _explain(error: dict[str, Any], model: type[BaseModel]) -> tuple[str, str | None]:
    loc = tuple(error["loc"])
    field = _field(loc)
    if error["type"] == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys here: {', '.join(sorted(known))}"
        return f"{field}: unknown key", hint
    return f"{field}: {error['msg']}", None


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        annotation = getattr(info, "annotation", None)
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), model)
    return list(model.model_fields)


def parse_toml(path: Path, model: type[Model]) -> Model:
    """Read a TOML file into `model`; any problem becomes one RecipeError naming file and field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError("file not found", path=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"not valid TOML: {exc}", path=path) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # an unknown key first: it is usually the typo behind a "field required" next to it
        first = min(exc.errors(), key=lambda error: error["type"] != "extra_forbidden")
        message, hint = _explain(dict(first), model)
        more = len(exc.errors()) - 1
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise RecipeError(message, path=path, hint=hint) from None


def _existing(directory: Path, relative: str, recipe_path: Path, field: str) -> Path:
    path = directory / relative
    if not path.is_file():
        raise RecipeError(
            f"{field}: file '{relative}' not found",
            path=recipe_path,
            hint=f"create {path} or correct the name in {RECIPE_FILE}",
        )
    return path


def globbed(directory: Path, patterns: list[str]) -> tuple[Path, ...]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(Path(p) for p in glob.glob(str(directory / pattern), recursive=True) if Path(p).is_file())
    return tuple(sorted(found))


def load_recipe(path: Path) -> Recipe:
    spec = parse_toml(path, RecipeFile)
    directory = path.parent
    apt = list(spec.os.packages) + (["locales"] if spec.os.locales else [])
    if spec.os.packages_file:
        listing = _existing(directory, spec.os.packages_file, path, "[os].packages_file")
        apt += [line.split("#")[0].strip() for line in listing.read_text().splitlines()]
    requirements = (
        _existing(directory, spec.python.requirements, path, "[python].requirements")
        if spec.python.requirements
        else None
    )
    post_build = _existing(directory, spec.post_build, path, "post_build") if spec.post_build else None
    conda_environment = (
        _existing(directory, spec.conda.environment, path, "[conda].environment") if spec.conda.environment else None
    )
    files = tuple(
        (_existing(directory, item.src, path, f"[files][{index}].src"), item) for index, item in enumerate(spec.files)
    )
    notebooks = () if spec.source else globbed(directory, spec.smoke.notebooks)  # a source's are in its repository
    _check_needed_assets(spec, notebooks, directory, path)
    return Recipe(
        name=directory.name,
        path=path,
        spec=spec,
        apt_packages=tuple(sorted({p for p in apt if p})),
        requirements=requirements,
        post_build=post_build,
        conda_environment=conda_environment,
        files=files,
        hooks=globbed(directory, spec.hooks.before_notebook),
        notebooks=notebooks,
        source=_source_location(spec.source, directory, path) if spec.source else None,
    )


def _source_location(source: SourceSpec, directory: Path, recipe_path: Path) -> str:
    if source.is_url:
        return source.repo
    folder = (directory / source.repo).resolve()
    if not folder.is_dir():
        raise RecipeError(
            f"[source].repo: folder '{source.repo}' not found",
            path=recipe_path,
            hint=f"give a git URL, or a git repository's folder relative to {directory}",
        )
    return folder.as_uri()


def _check_needed_assets(spec: RecipeFile, notebooks: tuple[Path, ...], directory: Path, path: Path) -> None:
    """Each [smoke].needs_asset entry names one of the recipe's smoke notebooks and optional assets."""
    names = {notebook.relative_to(directory).as_posix() for notebook in notebooks}
    optional = {asset.name for asset in spec.assets if asset.optional}
    for notebook, asset in spec.smoke.needs_asset.items():
        if notebook not in names:
            raise RecipeError(
                f"[smoke].needs_asset names '{notebook}', which is not one of the smoke notebooks",
                path=path,
                hint=f"use a path relative to the recipe folder: {', '.join(sorted(names)) or '(none found)'}",
            )
        if asset not in optional:
            raise RecipeError(
                f"[smoke].needs_asset: '{asset}' is not an optional asset of this recipe",
                path=path,
                hint=f"optional assets here: {', '.join(sorted(optional)) or '(none)'}; a required asset is always in the image",
            )


def load_recipes(images_dir: Path) -> dict[str, Recipe]:
    """Every images/<name>/image.toml below `images_dir`, keyed by folder name."""
    if not images_dir.is_dir():
        raise RecipeError("images folder not found", path=images_dir, hint="run imagebuild from the project root")
    return {path.parent.name: load_recipe(path) for path in sorted(images_dir.glob(f"*/{RECIPE_FILE}"))}
