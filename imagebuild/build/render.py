"""Step 4, render: one BuildPlan -> a Dockerfile and the exact files it copies.

Rendering is pure: the same plan, base reference and CA choice give the same bytes.
"""

import io
import json
import shlex
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import jinja2

from imagebuild.build.buildenv import run_mounts
from imagebuild.errors import AssetError, RecipeError
from imagebuild.inputs.archive import SECURITY_ARCHIVE
from imagebuild.inputs.conda import LOCAL_PACKAGES, subdir
from imagebuild.inputs.devpackages import LockedDevPackage
from imagebuild.inputs.gather import ImageInputs
from imagebuild.inputs.target import debian_suite, image_target
from imagebuild.plan import BuildPlan

INSTALLER = "uv==0.13.9"
"""The installer put into every root image's virtual environment; one pin for all images."""
CONDA_INSTALLER = ["py-rattler==0.28.0", "pyyaml==6.0.3"]
"""What installs a locked conda environment in a throwaway venv during the build (no binary from a fixed URL)."""
STACKS_FILES = ["start.sh", "run-hooks.sh", "_docker_stacks_log.sh", "fix-permissions", "docker_healthcheck.py"]
"""support/stacks/: the jupyter/docker-stacks entrypoint side every root image carries (see Dockerfile.j2)."""
STACK_INSTALLER = "/opt/imagebuild/installer"
"""Where a child of a dockerfile recipe puts uv (pip --target), outside the parent's environment."""
DEFAULT_ENVIRONMENT = "/opt/venv"
ASSET_LABEL = "io.imagebuild.asset."
DEV_PACKAGE_LABEL = "io.imagebuild.dev-package."
SOURCE_LABEL = "io.imagebuild.source"
NO_INPUTS = ImageInputs()


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


def context_files(tar: bytes, *, where: str, links: bool = False) -> tuple[ContextFile, ...]:
    """Every regular file of a context tar, by name, without git metadata (.git); `where` names
    the tar's origin in the error about a link, which imagebuild's contexts cannot hold (`links`:
    leave links out instead)."""
    files = []
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        for member in archive.getmembers():
            if ".git" in Path(member.name).parts or member.isdir():
                continue
            if member.issym() and links:
                continue
            if not member.isfile():
                raise RecipeError(
                    f"{where}: '{member.name}' is a link; imagebuild's build contexts hold regular files only",
                    hint="replace the link with the file in the repository, or leave it out in .dockerignore",
                )
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            files.append(ContextFile(member.name, data, member.mode & 0o7777))
    return tuple(sorted(files, key=lambda item: item.arcname))


@dataclass(frozen=True)
class RenderedImage:
    plan: BuildPlan
    base_ref: str
    dockerfile: str
    files: tuple[ContextFile, ...]
    post_build: str | None = None
    """The arcname of the script run during the build, which the mirror step may rewrite."""
    roots: tuple[str, ...] = ()
    """The images below the build that imagebuild provides (bootstraps or pulls): a chain's root, or
    every FROM image of a Dockerfile; the last is the one the image's labels name."""
    build_args: tuple[tuple[str, str], ...] = ()
    """A dockerfile recipe's build arguments (NAME, value), in the content hash."""


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """The template compiled once per host (jinja2 checks it against the source), not on every
    run; none where jinja2 finds no private temp folder of this user's."""
    try:
        return jinja2.FileSystemBytecodeCache()
    except (OSError, RuntimeError):
        return None


templates = jinja2.Environment(
    loader=jinja2.PackageLoader("imagebuild", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # a Dockerfile, not HTML
    bytecode_cache=_bytecode_cache(),
)
templates.filters["shell"] = shlex.quote


def support_file(name: str) -> bytes:
    return resources.files("imagebuild").joinpath("support", name).read_bytes()


def _recipe_file(plan: BuildPlan, path: Path, mode: int) -> ContextFile:
    relative = path.relative_to(plan.recipe.directory).as_posix()
    return ContextFile(arcname=f"recipe/{relative}", data=path.read_bytes(), mode=mode)


def _unpacked(archive: Path, file_name: str, arcname: str) -> list[ContextFile]:
    """The files of an archive asset, unpacked here so one COPY layer holds them and not the archive."""
    with tempfile.TemporaryDirectory(prefix="imagebuild-asset-") as scratch:
        named = Path(scratch) / file_name  # shutil picks the format from the name
        named.symlink_to(archive)
        target = Path(scratch) / "unpacked"
        try:
            shutil.unpack_archive(named, target, filter="data")
        except (shutil.ReadError, ValueError, OSError, tarfile.TarError, zipfile.BadZipFile) as error:
            raise AssetError(
                f"asset file {file_name} cannot be unpacked: {error}",
                path=archive,
                hint="set unpack = false, or give a zip or tar archive (.zip, .tar, .tar.gz, .tar.bz2, .tar.xz)",
            ) from None
        return [
            ContextFile(f"{arcname}/{path.relative_to(target).as_posix()}", path.read_bytes(), 0o755 if path.stat().st_mode & 0o100 else 0o644)
            for path in sorted(target.rglob("*"))
            if path.is_file()
        ]


def _asset_files(recipe_name: str, inputs: ImageInputs) -> tuple[list[ContextFile], list[dict[str, str]], list[dict[str, str]]]:
    """Context files, COPY lines and install commands of the image's (non-wheel) assets."""
    files: list[ContextFile] = []
    copies, installs = [], []
    for spec, path in inputs.assets:
        if spec.wheel or spec.conda:
            continue
        arcname = f"assets/{spec.name}"
        if spec.unpack:
            files += _unpacked(path, spec.file_name, arcname)
        else:
            files.append(ContextFile(f"{arcname}/{spec.file_name}", path.read_bytes()))
        copies.append({"arcname": arcname, "dest": spec.dest})
        if spec.install is None:
            continue
        if spec.install_at == "build":
            installs.append({"path": spec.path_in_image, "command": spec.install})
            continue
        hook = templates.get_template("asset-hook.sh.j2").render(
            image=recipe_name, asset=spec, marker=f"{spec.name}-{spec.sha256[:12]}"
        )
        files.append(ContextFile(f"imagebuild/hooks/90-asset-{spec.name}.sh", hook.encode(), 0o755))
    return files, copies, installs


def source_label(source: LockedDevPackage) -> str:
    """The repository, ref and commit as the Dockerfile's last line: on the image (manifests and
    diffs show it) and in the content hash, so a new commit is a new image."""
    value = json.dumps({"url": source.url, "ref": source.ref, "commit": source.commit}, sort_keys=True)
    return f"LABEL {json.dumps(SOURCE_LABEL)}={json.dumps(value)}\n"


def input_labels(inputs: ImageInputs) -> dict[str, str]:
    """Provenance on the image: each asset's checksum and each dev package's URL, ref and commit."""
    labels = {f"{ASSET_LABEL}{spec.name}": spec.sha256 for spec, _ in inputs.assets}
    if inputs.lock is not None:
        for package in inputs.lock.dev_packages:
            labels[f"{DEV_PACKAGE_LABEL}{package.name}"] = json.dumps(
                {"url": package.url, "ref": package.ref, "commit": package.commit}, sort_keys=True
            )
    return labels


def render(plan: BuildPlan, base_ref: str, *, ca_bundle: bytes | None = None, inputs: ImageInputs = NO_INPUTS) -> RenderedImage:
    """Compose the Dockerfile of `plan` on top of `base_ref`.

    `ca_bundle` enters the context only when the recipe keeps the CA in the image;
    otherwise builds fetch it per command from the host (see buildenv.py). With a lock, its
    pins replace the recipe's requirements and are installed with hash checking.
    """
    recipe = plan.recipe
    spec = recipe.spec
    is_root = spec.root is not None
    stack = plan.on_dockerfile_recipe
    files: list[ContextFile] = []
    if is_root:
        files.append(ContextFile("imagebuild/with-build-env", support_file("with-build-env"), 0o755))
        files += [ContextFile(f"imagebuild/stacks/{name}", support_file(f"stacks/{name}"), 0o755) for name in STACKS_FILES]
    if is_root or stack:
        files.append(ContextFile("imagebuild/inventory", support_file("inventory"), 0o755))
    requirements = None
    locked = inputs.lock is not None
    if inputs.lock is not None:
        if inputs.lock.requirements.strip():
            requirements = ContextFile("imagebuild/requirements.lock", inputs.lock.requirements.encode())
            files.append(requirements)
    elif recipe.requirements:
        requirements = _recipe_file(plan, recipe.requirements, 0o644)
        files.append(requirements)
    wheels = [ContextFile(f"imagebuild/wheels/{name}", path.read_bytes()) for name, path in inputs.wheels()]
    files += wheels
    checkouts = []
    for number, (dest, tar) in enumerate(inputs.checkouts):
        arcname = f"imagebuild/checkouts/{number}"
        files += [replace(f, arcname=f"{arcname}/{f.arcname}") for f in context_files(tar, where=f"the checkout for {dest}", links=True)]
        checkouts.append({"arcname": arcname, "dest": dest})
    conda_env = None
    if inputs.conda_lock is not None:
        files.append(ContextFile("imagebuild/conda-lock.yml", inputs.conda_lock.read_bytes()))
        files.append(ContextFile("imagebuild/install-conda", support_file("install-conda"), 0o755))
        carried = [ContextFile(f"imagebuild/conda-pkgs/{a.file_name}", path.read_bytes()) for a, path in inputs.assets if a.conda]
        files += carried
        conda_env = {
            "prefix": spec.conda.prefix,
            "platform": subdir(image_target(plan)),
            "installer": " ".join(CONDA_INSTALLER),
            "carried": bool(carried),
            "local_packages": LOCAL_PACKAGES,
        }
    asset_files, asset_copies, asset_installs = _asset_files(recipe.name, inputs)
    files += asset_files
    hooks_from_assets = [f for f in asset_files if f.arcname.startswith("imagebuild/hooks/")]
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
    hooks += [{"arcname": item.arcname, "filename": item.arcname.rsplit("/", 1)[-1]} for item in hooks_from_assets]
    post_build = _recipe_file(plan, recipe.post_build, 0o755) if recipe.post_build else None
    if post_build:
        files.append(post_build)
    kept_ca = None
    if spec.ca.keep and ca_bundle:
        kept_ca = ContextFile("imagebuild/ca-bundle.pem", ca_bundle)
        files.append(kept_ca)
    venv, user = _venv(plan), User()
    as_user = run_mounts(user.uid, user.gid)
    dockerfile = templates.get_template("Dockerfile.j2").render(
        recipe_path=f"images/{recipe.name}/{recipe.path.name}",
        name=recipe.name,
        base_ref=base_ref,
        is_root=is_root,
        user=user,
        venv=venv,
        installer=INSTALLER,
        stack=stack,
        stack_installer=STACK_INSTALLER,
        uv=f"{STACK_INSTALLER}/bin/uv" if stack else "uv",
        install_user="root" if stack else user.uid,
        mounts={"root": run_mounts(), "user": as_user, "install": run_mounts() if stack else as_user},
        as_owner=f"setpriv --reuid=$(stat -c %u {venv}) --regid=$(stat -c %g {venv}) --clear-groups env UV_NO_CACHE=1 "
        if stack
        else "",
        apt_packages=list(recipe.apt_packages),
        locales=spec.os.locales,
        debian_indexes=" ".join(f"{suite}={digest[:12]}" for suite, digest in sorted(inputs.lock.debian.items())) if inputs.lock else "",
        debian_security=f"deb {SECURITY_ARCHIVE} {debian_suite(spec.root)}-security main" if spec.root else "",
        requirements=requirements.arcname if requirements else None,
        locked=locked,
        conda=conda_env,
        wheels=[item.arcname.rsplit("/", 1)[-1] for item in wheels],
        checkouts=checkouts,
        assets=asset_copies,
        asset_installs=asset_installs,
        constraints=[f"/opt/imagebuild/{parent.name}/requirements.txt" for parent in plan.ancestors if parent.requirements]
        if spec.python.parent_pins == "hold"
        else [],
        files=copies,
        hooks=hooks,
        post_build=post_build.arcname if post_build else None,
        env=dict(sorted(spec.env.items())),
        kept_ca=kept_ca.arcname if kept_ca else None,
        conda_prefixes=[r.spec.conda.prefix for r in [*plan.ancestors, recipe] if r.conda_environment],
        labels=dict(sorted({**spec.labels, **input_labels(inputs)}.items())),
    )
    return RenderedImage(
        plan=plan,
        base_ref=base_ref,
        dockerfile=dockerfile,
        files=tuple(files),
        post_build=post_build.arcname if post_build else None,
    )


def _venv(plan: BuildPlan) -> str:
    """Children install into the virtual environment their root image created; on a dockerfile
    recipe, into the environment the nearest recipe names ([python].environment), or /opt/venv."""
    if plan.on_dockerfile_recipe:
        named = (r.spec.python.environment for r in (plan.recipe, *plan.ancestors) if r.spec.python.environment)
        return next(named, DEFAULT_ENVIRONMENT)
    return plan.bottom.spec.python.venv
