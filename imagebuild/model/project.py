"""Step 1, load: the project, imagebuild.toml at its root (all optional) and its recipes.

A setting of imagebuild.toml that points at something missing (the images folder, an output
path that is a file) is reported against imagebuild.toml, where it is fixed.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from imagebuild.errors import RecipeError
from imagebuild.model.names import BuilderName, RegistryHost, Repository, web_url
from imagebuild.model.recipe import Recipe, load_recipes
from imagebuild.model.toml import StrictModel, parse_toml

PROJECT_FILE = "imagebuild.toml"


class BootstrapSection(StrictModel):
    archive: Annotated[str, AfterValidator(web_url)] | None = Field(
        default=None, description="Debian archive URL (http or https); default: the host's apt sources"
    )


class BuildSection(StrictModel):
    output: str = Field(default="build", description="folder for Dockerfiles, logs and smoke results")
    env_port: int = Field(
        default=47471, gt=0, lt=65536, description="loopback port serving the CA and mirror settings to builds"
    )
    mirror: str | None = Field(default=None, description="mirror profile used when --mirror is not given")
    repository: Repository = Field(default="imagebuild", description="local repository prefix of built images")
    builder: BuilderName = Field(
        default="auto",
        description="auto (buildx, else a docker CLI that builds with BuildKit, else the classic builder), buildkit, "
        "classic, or the name of a buildx builder (kubernetes, remote, ...); --builder overrides",
    )
    jobs: int | None = Field(default=None, ge=1, description="images built at the same time (--jobs overrides); default: the host's cores")


class PublishSection(StrictModel):
    registry: RegistryHost = Field(
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

    images: str = Field(default="images", description="the folder of recipes, relative to the project root")
    bootstrap: BootstrapSection = BootstrapSection()
    build: BuildSection = BuildSection()
    publish: PublishSection = PublishSection()
    nightly: NightlySection = NightlySection()


@dataclass(frozen=True)
class Project:
    root: Path
    config: ProjectConfig
    recipes: dict[str, Recipe]

    @property
    def output_dir(self) -> Path:
        return self.root / self.config.build.output


def find_project(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` holding imagebuild.toml or an images/ folder."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).exists() or (folder / "images").is_dir():
            return folder
    raise RecipeError(
        "no imagebuild project here", path=here, hint=f"run from a folder with {PROJECT_FILE} or images/"
    )


def _checked(root: Path, config: ProjectConfig) -> ProjectConfig:
    """Settings that name paths, checked against the disk and reported against imagebuild.toml."""
    path = root / PROJECT_FILE
    images = root / config.images
    if not images.is_dir():
        raise RecipeError(
            f"images: folder '{config.images}' not found" + (" (it is a file)" if images.exists() else ""),
            path=path,
            hint=f"set images to the folder holding one folder per recipe, relative to {root}",
        )
    output = root / config.build.output
    if output.exists() and not output.is_dir():
        raise RecipeError(
            f"[build].output: '{config.build.output}' is a file, where a folder is expected",
            path=path,
            hint="name a folder for Dockerfiles, logs and smoke results (default 'build')",
        )
    return config


def load_project(root: Path | None = None) -> Project:
    root = root or find_project()
    config_path = root / PROJECT_FILE
    if config_path.exists():
        config = _checked(root, parse_toml(config_path, ProjectConfig))
    else:
        config = ProjectConfig()
    return Project(root=root, config=config, recipes=load_recipes(root / config.images))
