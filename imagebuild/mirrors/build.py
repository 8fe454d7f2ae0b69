"""How a build uses a mirror profile: the pipeline's mirror-rewrite step.

By default the mirror is a build-time matter: the rendered Dockerfile keeps its upstream
configuration, and the mirror reaches each build command through the build environment
(buildenv.py): index URLs, git rewrites and apt sources, with credentials, as variables and
files that never enter a layer. Only download URLs written into the Dockerfile or a postBuild
script are rewritten in place. With `runtime = true`, the root image also gets the mirror's
pip, uv, git and apt configuration for its users (never its credentials).
"""

import json
from dataclasses import replace

from imagebuild.build.buildenv import BuildEnvironment
from imagebuild.build.render import ContextFile, RenderedImage, User, templates
from imagebuild.config import Logins
from imagebuild.mirrors.captured import rewrite_captured
from imagebuild.mirrors.hostenv import git_variables, index_variables, with_credentials
from imagebuild.mirrors.rewrite import FileKind, rewrite_file
from imagebuild.mirrors.rewrite.conda import mirror_condarc
from imagebuild.mirrors.rules import RuleSet, url_rules
from imagebuild.model.mirror import Mirror

RUNTIME_DIR = "/usr/local/share/imagebuild/mirror"
CONDA_MIRRORS_VARIABLE = "IMAGEBUILD_CONDA_MIRRORS"
BUILD_TIME_PURPOSES = ("pypi", "downloads")
"""Rules applied to the Dockerfile and postBuild text; git and apt go through the build environment."""


def build_environment(
    mirror: Mirror | None, credentials: Logins, ca_bundle: bytes | None, debian_archive: str
) -> BuildEnvironment:
    """The variables, apt rewrite and CA bundle that with-build-env applies to every build command.

    `ca_bundle` is the run's one bundle (it holds the profile's ca_cert); `debian_archive` is
    the archive the root image's sources name, so apt's rule covers it even when it is not
    deb.debian.org.
    """
    if mirror is None:
        return BuildEnvironment(ca_bundle=ca_bundle)
    spec = mirror.spec
    variables = {**index_variables(mirror, credentials), **git_variables(mirror, credentials)}
    conda_rules = url_rules(spec).only("conda").rules
    if conda_rules:  # read by support/install-conda: (upstream prefix, mirror prefix) pairs
        pairs = [[upstream, with_credentials(rule.mirror, credentials)] for rule in conda_rules for upstream in rule.upstreams]
        variables[CONDA_MIRRORS_VARIABLE] = json.dumps(pairs)
    apt_rules = url_rules(spec, extra_debian_upstreams=(debian_archive,)).only("apt")
    apt_rules = RuleSet(tuple(replace(rule, mirror=with_credentials(rule.mirror, credentials)) for rule in apt_rules.rules))
    secrets = tuple(value for pair in credentials.values() for value in pair)
    return BuildEnvironment(
        ca_bundle=ca_bundle,
        variables=tuple(variables.items()),
        apt_sed=apt_rules.sed_script(),
        condarc=_condarc(mirror) if spec.conda is not None else "",
        secrets=secrets,
    )


def _uv_toml(mirror: Mirror) -> str:
    pypi = mirror.spec.pypi
    assert pypi is not None
    lines = [f"# Written by imagebuild from mirror profile '{mirror.name}'.\n"]
    for url in pypi.extra_index_urls:
        lines.append(f'[[index]]\nurl = "{url}"\n')
    lines.append(f'[[index]]\nurl = "{pypi.index_url}"\ndefault = true\n')
    if pypi.trusted_hosts:
        lines.insert(1, "allow-insecure-host = [" + ", ".join(f'"{host}"' for host in pypi.trusted_hosts) + "]\n")
    return "\n".join(lines)


def _gitconfig(mirror: Mirror) -> str:
    return "".join(
        f'[url "{proxy}/"]\n\tinsteadOf = {upstream}/\n' for upstream, proxy in sorted(mirror.spec.git.items())
    )


def _condarc(mirror: Mirror) -> str:
    return f"# Written by imagebuild from mirror profile '{mirror.name}'.\n" + mirror_condarc(mirror.spec)


def runtime_files(mirror: Mirror, debian_archive: str) -> list[tuple[ContextFile, str]]:
    """(context file, destination) pairs that configure the mirror for the image's users."""
    spec = mirror.spec
    found: list[tuple[ContextFile, str]] = []
    if spec.pypi is not None:
        pip_conf = rewrite_file(FileKind.PIP_CONF, "", spec, source=mirror.path)
        found.append((ContextFile("imagebuild/mirror/pip.conf", pip_conf.encode()), "/etc/pip.conf"))
        found.append((ContextFile("imagebuild/mirror/uv.toml", _uv_toml(mirror).encode()), "/etc/uv/uv.toml"))
    if spec.git:
        found.append((ContextFile("imagebuild/mirror/gitconfig", _gitconfig(mirror).encode()), "/etc/gitconfig"))
    if spec.conda is not None:
        found.append((ContextFile("imagebuild/mirror/condarc", _condarc(mirror).encode()), "/etc/conda/.condarc"))
    apt_sed = url_rules(spec, extra_debian_upstreams=(debian_archive,)).only("apt").sed_script()
    if apt_sed:
        found.append((ContextFile("imagebuild/mirror/apt.sed", apt_sed.encode()), f"{RUNTIME_DIR}/apt.sed"))
    return found


def rewrite_for_build(rendered: RenderedImage, mirror: Mirror | None, debian_archive: str) -> RenderedImage:
    """The mirror-rewrite step: download URLs in the Dockerfile and postBuild point at the mirror,
    and with `runtime = true` a root image gets a last layer configuring the mirror. A Dockerfile
    imagebuild did not write (repo2docker's, a dockerfile recipe's) is rewritten even without a
    mirror: its bases and build environment need it."""
    spec = rendered.plan.recipe.spec
    if spec.source is not None or spec.dockerfile is not None:
        return rewrite_captured(rendered, mirror)
    if mirror is None:
        return rendered
    rules = url_rules(mirror.spec).only(*BUILD_TIME_PURPOSES)
    dockerfile = rules.apply(rendered.dockerfile)
    files = tuple(
        replace(item, data=rules.apply(item.data.decode()).encode()) if item.arcname == rendered.post_build else item
        for item in rendered.files
    )
    if mirror.spec.runtime and rendered.plan.recipe.spec.root is not None:
        configured = runtime_files(mirror, debian_archive)
        dockerfile += templates.get_template("mirror-runtime.j2").render(
            mirror=mirror.name,
            files=[{"arcname": item.arcname, "dest": dest} for item, dest in configured],
            apt_sed=f"{RUNTIME_DIR}/apt.sed" if any(dest.endswith("apt.sed") for _, dest in configured) else None,
            user=User(),
        )
        files += tuple(item for item, _ in configured)
    return replace(rendered, dockerfile=dockerfile, files=files)
