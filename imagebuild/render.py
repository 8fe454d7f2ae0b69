"""Step 3, render: one BuildPlan -> a Dockerfile and the exact files it copies.

Rendering is pure: the same plan, base reference and CA choice give the same bytes.
"""

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from imagebuild.plan import BuildPlan

INSTALLER = "uv==0.13.9"
"""The installer put into every root image's virtual environment; one pin for all images."""


@dataclass(frozen=True)
class User:
    name: str = "jovyan"
    uid: int = 1000
    gid: int = 100


@dataclass(frozen=True)
class ContextFile:
    """A file of the build context: its name in the context, its bytes and its mode."""

    arcname: str
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class RenderedImage:
    plan: BuildPlan
    base_ref: str
    dockerfile: str
    files: tuple[ContextFile, ...]
    post_build: str | None = None
    """The arcname of the script run during the build, which the mirror step may rewrite."""


templates = jinja2.Environment(
    loader=jinja2.PackageLoader("imagebuild", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # a Dockerfile, not HTML
)


def support_file(name: str) -> bytes:
    return resources.files("imagebuild").joinpath("support", name).read_bytes()


def _recipe_file(plan: BuildPlan, path: Path, mode: int) -> ContextFile:
    relative = path.relative_to(plan.recipe.directory).as_posix()
    return ContextFile(arcname=f"recipe/{relative}", data=path.read_bytes(), mode=mode)


def render(plan: BuildPlan, base_ref: str, *, ca_bundle: bytes | None = None) -> RenderedImage:
    """Compose the Dockerfile of `plan` on top of `base_ref`.

    `ca_bundle` enters the context only when the recipe keeps the CA in the image;
    otherwise builds fetch it per command from the host (see buildenv.py).
    """
    recipe = plan.recipe
    spec = recipe.spec
    is_root = spec.root is not None
    files: list[ContextFile] = []
    if is_root:
        files.append(ContextFile("imagebuild/with-build-env", support_file("with-build-env"), 0o755))
    requirements = None
    if recipe.requirements:
        requirements = _recipe_file(plan, recipe.requirements, 0o644)
        files.append(requirements)
    copies = []
    for source, copy in recipe.files:
        item = _recipe_file(plan, source, int(copy.mode, 8))
        files.append(item)
        copies.append({"arcname": item.arcname, "dest": copy.dest})
    hooks = []
    for hook in recipe.hooks:
        item = _recipe_file(plan, hook, 0o755)
        files.append(item)
        hooks.append({"arcname": item.arcname, "filename": hook.name})
    post_build = _recipe_file(plan, recipe.post_build, 0o755) if recipe.post_build else None
    if post_build:
        files.append(post_build)
    kept_ca = None
    if spec.ca.keep and ca_bundle:
        kept_ca = ContextFile("imagebuild/ca-bundle.pem", ca_bundle)
        files.append(kept_ca)
    dockerfile = templates.get_template("Dockerfile.j2").render(
        recipe_path=f"images/{recipe.name}/{recipe.path.name}",
        name=recipe.name,
        base_ref=base_ref,
        is_root=is_root,
        user=User(),
        venv=_venv(plan),
        installer=INSTALLER,
        apt_packages=list(recipe.apt_packages),
        requirements=requirements.arcname if requirements else None,
        constraints=[f"/opt/imagebuild/{parent.name}/requirements.txt" for parent in plan.ancestors if parent.requirements],
        files=copies,
        hooks=hooks,
        post_build=post_build.arcname if post_build else None,
        env=dict(sorted(spec.env.items())),
        kept_ca=kept_ca.arcname if kept_ca else None,
        labels=dict(sorted(spec.labels.items())),
    )
    return RenderedImage(
        plan=plan,
        base_ref=base_ref,
        dockerfile=dockerfile,
        files=tuple(files),
        post_build=post_build.arcname if post_build else None,
    )


def _venv(plan: BuildPlan) -> str:
    """Children install into the virtual environment their root image created."""
    bottom = plan.ancestors[-1] if plan.ancestors else plan.recipe
    return bottom.spec.python.venv
