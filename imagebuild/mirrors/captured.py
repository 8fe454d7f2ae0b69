"""The mirror-rewrite step for a Dockerfile imagebuild did not write: a build context repo2docker
made (binder.py), or a dockerfile recipe's own Dockerfile and context (stack.py).

That Dockerfile was written without imagebuild in mind, so the step changes three things and
leaves the repository's own files exactly as they are:

- FROM: debian:<suite> (also as docker.io/library/debian:<suite>) is the root image imagebuild
  pulls or bootstraps (rootfs.py); any other image comes through the profile's registry mirror.
- Every stage runs its shell-form RUN lines through with-build-env (as its SHELL), each with the
  build environment's secret mount, so pip, uv, git and apt get the mirror's index, rewrites and
  credentials and the host's CA from the build environment (buildenv.py), as in imagebuild's own
  Dockerfiles, and none of it enters a layer.
- URLs in the Dockerfile and in repo2docker's build scripts and conda lock files point at the
  mirror, through the same rewriters as `imagebuild mirror rewrite`.
"""

import json
import re
from dataclasses import replace
from pathlib import Path

from imagebuild.build.buildenv import BUILD_ARG, SECRET_MOUNT
from imagebuild.build.render import ContextFile, RenderedImage, support_file
from imagebuild.errors import RecipeError
from imagebuild.inputs.target import debian_suite
from imagebuild.mirrors.rewrite import FileKind, detect_kind, rewrite_file
from imagebuild.mirrors.rewrite.dockerfile import dockerfile_instructions, rewrite_dockerfile
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import Mirror, MirrorProfile
from imagebuild.model.routes import rewrite_image_ref

BUILD_SCRIPTS = "build_script_files/"
"""Where repo2docker's build packs put their scripts and conda lock files in the context."""
SCRIPT_PURPOSES = ("pypi", "conda", "downloads")
"""URL rules for those files; git and apt reach their commands through with-build-env."""
WRAPPER = "/usr/local/bin/with-build-env"
WRAPPER_FILE = ContextFile("imagebuild/with-build-env", support_file("with-build-env"), 0o755)
DEFAULT_SHELL = ["/bin/sh", "-c"]
STAGE_PREAMBLE = [
    "# imagebuild: RUN lines get the host's CA and mirror settings through with-build-env, never in a layer\n",
    f"ARG {BUILD_ARG}=\n",
    f"COPY {WRAPPER_FILE.arcname} {WRAPPER}\n",
]


def route_image(ref: str, registry: dict[str, str]) -> str:
    """Where a build takes a FROM image: the local debian:<suite> root, else the registry mirror's copy."""
    suite = debian_suite(ref)
    return f"debian:{suite}" if suite else rewrite_image_ref(ref, registry)


def rewrite_captured(rendered: RenderedImage, mirror: Mirror | None) -> RenderedImage:
    """The captured context ready to build here; its `base_ref` is the (routed) image of the last
    FROM, its `roots` every routed FROM image imagebuild must provide."""
    profile = mirror.spec if mirror else MirrorProfile()
    bases: list[str] = []

    def route(ref: str) -> str:
        bases.append(route_image(ref, profile.registry))
        return bases[-1]

    dockerfile = rewrite_dockerfile(rendered.dockerfile, profile, source=Path("Dockerfile"), from_image=route)
    roots = [base for base in bases if base != "scratch"]
    if not roots:
        raise RecipeError(
            f"{_kind(rendered)}: the Dockerfile names no base image imagebuild can provide",
            path=rendered.plan.recipe.path,
            hint="start the Dockerfile with FROM IMAGE:TAG (a global ARG default works too)",
        )
    files = tuple(_rewrite_script(item, profile) if item.arcname.startswith(BUILD_SCRIPTS) else item for item in rendered.files)
    return replace(
        rendered,
        dockerfile=with_build_env(dockerfile, _kind(rendered)),
        files=(*files, WRAPPER_FILE),
        base_ref=roots[-1],
        roots=tuple(dict.fromkeys(roots)),
    )


def _kind(rendered: RenderedImage) -> str:
    """How errors name where the Dockerfile came from."""
    return "dockerfile" if rendered.plan.recipe.spec.dockerfile is not None else "[source]"


def _shell(command: list[str]) -> str:
    return f"SHELL {json.dumps(command)}\n"


def with_build_env(dockerfile: str, kind: str) -> str:
    """Each stage (but scratch) gets with-build-env and runs its RUN lines through it; at the end of
    the stage the stage's own shell is restored, so the image's config keeps it."""
    instructions = dockerfile_instructions(dockerfile)
    lines = dockerfile.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    before: dict[int, list[str]] = {}
    replaced: dict[int, str] = {}
    shell: list[str] | None = None  # the current stage's own shell; None in scratch
    for index, (keyword, line, words) in enumerate(instructions):
        following = instructions[index + 1][1] if index + 1 < len(instructions) else len(lines)
        if keyword == "FROM":
            if shell is not None:
                before.setdefault(line, []).append(_shell(shell))
            image = next((word for word in words if not word.startswith("--")), "scratch")
            shell = None if image == "scratch" else DEFAULT_SHELL
            if shell is not None:  # right below a one-line FROM, else before the next instruction
                end = line + 1 if not lines[line].rstrip().endswith("\\") else following
                before.setdefault(end, []).extend([*STAGE_PREAMBLE, _shell([WRAPPER, *shell])])
        elif keyword == "SHELL" and shell is not None:
            if following != line + 1:
                raise RecipeError(
                    f"{kind}: Dockerfile line {line + 1}: a SHELL over several lines",
                    hint='write SHELL ["...", "..."] on one line in the Dockerfile',
                )
            try:
                shell = json.loads(" ".join(words))
            except json.JSONDecodeError:
                raise RecipeError(
                    f"{kind}: Dockerfile line {line + 1}: SHELL must be a JSON list", hint='write SHELL ["/bin/bash", "-c"]'
                ) from None
            replaced[line] = _shell([WRAPPER, *shell])
        elif keyword == "RUN" and shell is not None:
            replaced[line] = re.sub(r"^(\s*RUN)(?=\s)", rf"\1 {SECRET_MOUNT}", lines[line], count=1, flags=re.IGNORECASE)
    if shell is not None:
        before.setdefault(len(lines), []).append(_shell(shell))
    out = []
    for index, text in enumerate([*lines, ""]):
        out += before.get(index, [])
        out.append(replaced.get(index, text))
    return "".join(out)


def _rewrite_script(item: ContextFile, profile: MirrorProfile) -> ContextFile:
    """A conda lock through the conda-lock rewriter; any other build script through the URL rules."""
    text = item.data.decode()
    try:
        kind = detect_kind(Path(item.arcname), text)
    except RecipeError:  # a shell script: no kind of its own
        kind = None
    if kind is FileKind.CONDA_LOCK:
        rewritten = rewrite_file(kind, text, profile, source=Path(item.arcname))
    else:
        rewritten = url_rules(profile).only(*SCRIPT_PURPOSES).apply(text)
    return item if rewritten == text else replace(item, data=rewritten.encode())
