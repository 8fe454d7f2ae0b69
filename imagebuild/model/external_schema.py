"""Step 1, load: recipes whose image is described elsewhere, a Binder repository ([source],
built by repo2docker) or an existing Dockerfile (`dockerfile`), and the git refs they are locked at."""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from imagebuild.model.names import git_url
from imagebuild.model.toml import StrictModel


def one_line_values(values: dict[str, str]) -> dict[str, str]:
    for key, value in values.items():
        if any(c in key or c in value for c in "\n\r\x00"):
            raise ValueError("keys and values must be one line each (no line break or NUL)")
    return values


def _git_ref(ref: str) -> str:
    if not ref or ref.startswith("-") or any(c.isspace() for c in ref):
        raise ValueError(f"must be a branch, tag or commit, got {ref!r}")
    return ref


GitRef = Annotated[str, AfterValidator(_git_ref)]


def _url_or_folder(repo: str) -> str:
    return git_url(repo) if "://" in repo or repo.startswith("git+") else repo


Repository = Annotated[str, AfterValidator(_url_or_folder)]
"""A git URL (checked) or a folder relative to the recipe."""


class SourceSpec(StrictModel):
    """A Binder repository built by repo2docker instead of layers: `imagebuild lock` pins `ref` to a commit."""

    repo: Repository = Field(description="a git URL (https://, ssh://, git://, file://) or a folder relative to the recipe")
    ref: GitRef = Field(default="HEAD", description="a branch, tag or commit")

    @property
    def is_url(self) -> bool:
        return "://" in self.repo




def _stack_path(relative: str) -> str:
    if relative.startswith("/") or ".." in Path(relative).parts:
        raise ValueError(f"{relative!r} must be a path relative to the recipe folder or the repository, without '..'")
    return relative


StackPath = Annotated[str, AfterValidator(_stack_path)]


def _version(pattern: str, what: str) -> AfterValidator:
    def check(version: str) -> str:
        if not re.fullmatch(pattern, version):
            raise ValueError(f"must be {what}, got {version!r}")
        return version

    return AfterValidator(check)


PythonVersion = Annotated[str, _version(r"3\.\d+\.\d+", "a full CPython version like '3.11.2'")]
GlibcVersion = Annotated[str, _version(r"2\.\d+", "a glibc version like '2.36'")]


class DockerfileSpec(StrictModel):
    """An existing Dockerfile built as it is, its FROM images and RUN lines routed through the mirror
    and the build environment: in the recipe folder, or in a git repository at a locked commit."""

    repo: Repository | None = Field(
        default=None, description="a git URL or a repository's folder relative to the recipe; none: the recipe folder"
    )
    ref: GitRef = Field(default="HEAD", description="with repo: a branch, tag or commit `imagebuild lock` pins")
    path: StackPath = Field(default="Dockerfile", description="the Dockerfile, relative to the recipe folder or the repository")
    context: StackPath = Field(default=".", description="the build context folder, relative to the same place")
    target: str | None = Field(default=None, description="the stage to build (docker build --target); default: the last")
    args: Annotated[dict[str, str], AfterValidator(one_line_values)] = Field(
        default={}, description="build arguments (docker build --build-arg NAME=value); a FROM's ARG is resolved with them"
    )
    python: PythonVersion | None = Field(
        default=None, description="the full version of the stack's Python, e.g. '3.11.2', for locking children's requirements"
    )
    glibc: GlibcVersion | None = Field(default=None, description="the stack's C library version, e.g. '2.36', with 'python'")

    @model_validator(mode="after")
    def _both_or_neither(self) -> "DockerfileSpec":
        if (self.python is None) != (self.glibc is None):
            raise ValueError("give both 'python' and 'glibc' (what `ldd --version` prints in the image), or neither")
        return self


@dataclass(frozen=True)
class ExternalKind:
    """A recipe whose image is described elsewhere: what it may set besides (imagebuild smoke-tests
    and tags it), and where its other settings belong instead."""

    field: str
    name: str
    built: str
    instead: str

    @property
    def allowed(self) -> set[str]:
        return {"description", self.field, "smoke", "tags"}


EXTERNAL_KINDS = (
    ExternalKind("dockerfile", "a dockerfile recipe", "from its Dockerfile", "add layers in a recipe that names this one as its parent"),
    ExternalKind(
        "source",
        "a [source] recipe",
        "by repo2docker from the repository",
        "put such settings in the repository's Binder files: apt.txt, requirements.txt, postBuild, ...",
    ),
)
