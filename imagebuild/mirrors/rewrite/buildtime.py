"""The shell text that points one Dockerfile RUN at a mirror profile, for `mirror rewrite`.

A rewritten Dockerfile is built by a plain `docker build`, without imagebuild's build
environment, so each shell-form RUN starts with a prefix. With BuildKit (the default) the prefix
only sources the settings from the secret mount /run/secrets/imagebuild-mirror, which `mirror
rewrite` writes beside the file (`docker build --secret id=imagebuild-mirror,src=...`): the
mirror's addresses stay out of `docker history`. The plain form (`--plain`, for engines without
BuildKit) writes the settings into the prefix itself. Either way they are, for that RUN and the
programs it starts only:
- pip and uv: their index, extra indexes and trusted hosts (PIP_*, UV_* variables);
- git: the profile's URL rewrites (GIT_CONFIG_COUNT/KEY/VALUE, git's environment-only config);
- conda, mamba and micromamba: a .condarc with the channel alias, default and custom channels,
  named by CONDARC and MAMBARC (all three read both; the image's own .condarc still applies);
- apt: copies of the image's sources (sources.list, .list and deb822 .sources) rewritten by the
  same sed script imagebuild uses inside builds, named by APT_CONFIG; the image's files stay.

The files are written under /dev/shm, a tmpfs that never enters a layer (and deleted on exit),
and nothing is set with ENV or ARG, so the image's configuration keeps no mirror setting. Why a
prefix and not ARG: an ARG reaches exec-form RUNs too, but apt needs a shell step anyway, and
`docker history` records every ARG a RUN used as well as the RUN's text; either way the history
names the mirror (as it does any rewritten URL), while Env and the image's files stay clean.
The markers around the prefix let a second rewrite recognise (and replace) it.

Precedence: environment variables beat pip's and uv's config files; conda puts $CONDARC above
its other files; libmamba (mamba 2, micromamba) reads $CONDARC and $MAMBARC as user files, below
a prefix's own .condarc (which in the stacks seen sets channels, not custom_channels). The apt
copies are made when the RUN starts: a source list the same RUN adds is not among them.
"""

import shlex
from collections.abc import Callable

from imagebuild.mirrors.rewrite.conda import mirror_condarc
from imagebuild.mirrors.rules import url_rules
from imagebuild.model.mirror import MirrorProfile

BEGIN = ": imagebuild-mirror-begin;"
END = ": imagebuild-mirror-end;"
_SCRATCH = '_mirror=$(mktemp -d /dev/shm/imagebuild-mirror.XXXXXX 2>/dev/null || mktemp -d) && trap \'rm -rf "$_mirror"\' EXIT'
_APT_SOURCES = (
    "printf '%s\\n' {script} > \"$_mirror/apt.sed\""
    ' && mkdir -p "$_mirror/apt/parts" && {{ sed -E -f "$_mirror/apt.sed" /etc/apt/sources.list > "$_mirror/apt/sources.list" 2>/dev/null'
    ' || : > "$_mirror/apt/sources.list"; }} && for _source in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources;'
    ' do if [ -f "$_source" ]; then sed -E -f "$_mirror/apt.sed" "$_source" > "$_mirror/apt/parts/${{_source##*/}}"; fi; done'
    " && printf 'Dir::Etc::sourcelist \"%s\";\\nDir::Etc::sourceparts \"%s\";\\n'"
    ' "$_mirror/apt/sources.list" "$_mirror/apt/parts" > "$_mirror/apt/apt.conf" && chmod -R a+rX "$_mirror"'
    ' && export APT_CONFIG="$_mirror/apt/apt.conf"'
)


UrlFilter = Callable[[str], str]
"""What a mirror URL becomes in a setting: itself here; with the run's credentials inside builds."""


def _unchanged(url: str) -> str:
    return url


def pypi_settings(profile: MirrorProfile, url: UrlFilter = _unchanged) -> dict[str, str]:
    """pip's and uv's index, extra indexes and trusted hosts for the profile's [pypi]."""
    if profile.pypi is None:
        return {}
    index = url(profile.pypi.index_url)
    variables = {"PIP_INDEX_URL": index, "UV_DEFAULT_INDEX": index}
    if profile.pypi.extra_index_urls:
        extras = " ".join(url(extra) for extra in profile.pypi.extra_index_urls)
        variables |= {"PIP_EXTRA_INDEX_URL": extras, "UV_INDEX": extras}
    if profile.pypi.trusted_hosts:
        hosts = " ".join(profile.pypi.trusted_hosts)
        variables |= {"PIP_TRUSTED_HOST": hosts, "UV_INSECURE_HOST": hosts}
    return variables


def git_settings(profile: MirrorProfile, url: UrlFilter = _unchanged) -> dict[str, str]:
    """The profile's [git] rewrites as git's environment-only config (GIT_CONFIG_COUNT, ...)."""
    rewrites = sorted(profile.git.items())
    if not rewrites:
        return {}
    variables = {"GIT_CONFIG_COUNT": str(len(rewrites))}
    for index, (upstream, proxy) in enumerate(rewrites):
        variables[f"GIT_CONFIG_KEY_{index}"] = f"url.{url(proxy)}/.insteadOf"
        variables[f"GIT_CONFIG_VALUE_{index}"] = f"{upstream}/"
    return variables


def environment(profile: MirrorProfile) -> dict[str, str]:
    """pip's, uv's and git's settings for the profile, as environment variables."""
    return pypi_settings(profile) | git_settings(profile)


MIRROR_SECRET = "imagebuild-mirror"
SECRET_FLAG = f"--mount=type=secret,id={MIRROR_SECRET},mode=0444"


def run_prefix(profile: MirrorProfile, *, secret: bool = False) -> str | None:
    """The text to put before a RUN's command (it ends with a space), or None when the profile
    has no setting a RUN could use; with `secret`, one that sources them from the secret mount."""
    settings = run_settings(profile)
    if settings is None:
        return None
    return f"{BEGIN} {f'. /run/secrets/{MIRROR_SECRET}' if secret else settings}; {END} "


def run_settings(profile: MirrorProfile) -> str | None:
    """The shell commands that set the profile's build-time settings (the body of the plain
    prefix, and the secret file of the BuildKit form), or None when there are none."""
    steps = []
    variables = environment(profile)
    if variables:
        steps.append("export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items()))
    condarc = mirror_condarc(profile) if profile.conda is not None else ""
    apt = url_rules(profile).only("apt")
    if condarc or apt:
        steps.insert(0, _SCRATCH)
    if condarc:
        lines = " ".join(shlex.quote(line) for line in condarc.splitlines())
        steps.append(f'printf \'%s\\n\' {lines} > "$_mirror/condarc" && export CONDARC="$_mirror/condarc" MAMBARC="$_mirror/condarc"')
    if apt:
        script = " ".join(shlex.quote(line) for line in apt.sed_script().splitlines())
        steps.append(_APT_SOURCES.format(script=script))
    return " && ".join(steps) if steps else None


RUNTIME_MARKER = "# imagebuild mirror rewrite: runtime = true, the image keeps these mirror settings"
RUNTIME_CONDARC = "/etc/imagebuild-mirror/condarc"


def runtime_lines(profile: MirrorProfile) -> list[str]:
    """With `runtime = true`, the lines after each FROM that keep pip's, uv's, git's and conda's
    settings in the image for its users (ENV, and the .condarc written by a heredoc COPY, which
    needs BuildKit); apt's sources are routed per RUN only, so the image's own stay upstream.
    Empty for a build-time-only profile."""
    if not profile.runtime:
        return []
    variables = environment(profile)
    lines = []
    if profile.conda is not None:
        variables |= {"CONDARC": RUNTIME_CONDARC, "MAMBARC": RUNTIME_CONDARC}
        lines = [f"COPY <<IMAGEBUILD_MIRROR_CONDARC {RUNTIME_CONDARC}", *mirror_condarc(profile).splitlines(), "IMAGEBUILD_MIRROR_CONDARC"]
    if not variables:
        return []
    settings = " ".join(f'{name}="{value}"' for name, value in variables.items())
    return [RUNTIME_MARKER, f"ENV {settings}", *lines]
