"""One configuration per run: the merged trust bundle, the shared options of every image
command, and each download that must trust the bundle (the defects of issue 18)."""

from pathlib import Path

import certifi
import click
import pytest
import typer
from typer.testing import CliRunner

from imagebuild import pipeline
from imagebuild.cli import terminal
from imagebuild.cli.main import app
from imagebuild.config import RunOptions, host_bundle, merged_trust, resolve
from imagebuild.errors import LockError, RecipeError
from imagebuild.inputs.archive import package_indexes
from imagebuild.inputs.fetch import Fetcher
from imagebuild.mirrors.build import build_environment
from imagebuild.model.project import load_project
from imagebuild.plan import plan
from tests.unit.tls import https_files, make_tls

IMAGE_COMMANDS = ("build", "push", "smoke", "plan", "images", "tags", "nightly", "mirror sync", "render")
SUITE_FILES = {
    "debian/dists/bookworm/InRelease": "1",
    "debian/dists/bookworm-updates/InRelease": "2",
    "debian-security/dists/bookworm-security/InRelease": "3",
}
IN_RELEASE = "SHA256:\n {digest}   1234 main/binary-amd64/Packages\n"


def _pem(tmp_path: Path, name: str) -> bytes:
    return make_tls(tmp_path / name, f"imagebuild {name} CA").ca_pem


@pytest.fixture
def site(make_project, tmp_path, monkeypatch):
    """A project whose profile 'site' trusts its own CA (ca_cert) and names a runtime-free apt mirror."""
    for variable in ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE", "http_proxy", "https_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path / "cache"))
    root = make_project.root
    (root / "imagebuild.toml").write_text('[bootstrap]\narchive = "http://deb.debian.org/debian"\n')
    (root / "mirrors").mkdir()
    tls = make_tls(tmp_path / "site-tls", "imagebuild site CA")
    (root / "mirrors" / "site-ca.pem").write_bytes(tls.ca_pem)
    (root / "mirrors" / "site.toml").write_text('ca_cert = "site-ca.pem"\n')
    return root, tls


def _env(root: Path, values: dict[str, str]) -> dict[str, str]:
    """A command's environment: `values` and the test's own cache folder."""
    return {"IMAGEBUILD_CACHE": str(root.parent / "cache"), **values}


def _profile(root: Path, text: str) -> None:
    (root / "mirrors" / "site.toml").write_text('ca_cert = "site-ca.pem"\n' + text)


# -- the one trust bundle -------------------------------------------------------------------------


def test_the_bundle_is_the_hosts_plus_ca_cert_plus_the_profiles_each_certificate_once(site, tmp_path):
    root, tls = site
    host, extra = tmp_path / "host.pem", tmp_path / "extra.pem"
    host_pem, extra_pem = _pem(tmp_path, "host"), _pem(tmp_path, "extra")
    host.write_bytes(host_pem)
    extra.write_bytes(extra_pem + host_pem)  # a certificate twice is kept once
    config = resolve(RunOptions(mirror="site", ca_cert=extra), _env(root, {"PIP_CERT": str(host)}), load_project(root))
    assert config.trust is not None
    assert config.trust.pem == b"\n".join(pem.strip() for pem in (host_pem, extra_pem, tls.ca_pem)) + b"\n"
    assert config.trust.file.read_bytes() == config.trust.pem
    assert config.trust.file.parent == root.parent / "cache" / "trust"


def test_a_profile_ca_alone_is_added_to_the_public_cas(site):
    root, tls = site
    config = resolve(RunOptions(mirror="site"), _env(root, {}), load_project(root))
    assert config.ca_pem is not None
    assert config.ca_pem.endswith(tls.ca_pem.strip() + b"\n")
    first_public = Path(certifi.where()).read_bytes().split(b"-----END CERTIFICATE-----")[0]
    assert first_public.split(b"-----BEGIN CERTIFICATE-----")[1] in config.ca_pem


def test_no_bundle_when_nothing_beyond_the_defaults_is_asked_for(site):
    root, _ = site
    assert resolve(RunOptions(mirror="none"), _env(root, {}), load_project(root)).trust is None


def test_the_host_bundle_is_the_first_variable_naming_a_file(tmp_path):
    bundle = tmp_path / "pip.pem"
    bundle.write_text("x")
    assert host_bundle({"SSL_CERT_FILE": str(tmp_path / "gone.pem"), "PIP_CERT": str(bundle)}) == (bundle, "PIP_CERT")
    assert host_bundle({}) is None


def test_a_missing_ca_cert_is_named(tmp_path):
    with pytest.raises(RecipeError, match=r"--ca-cert: CA bundle '.*nope.pem' not found"):
        merged_trust({}, tmp_path / "nope.pem", None)


# -- every image command: the same options, the same configuration ---------------------------------


def _command(name: str) -> click.Command:
    command = typer.main.get_command(app)
    for part in name.split():
        command = command.commands[part]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize("name", IMAGE_COMMANDS)
def test_every_command_naming_images_by_content_hash_takes_the_shared_options(name):
    """`push` had no --mirror and ignored IMAGEBUILD_MIRROR: `build --mirror X` then `push`
    looked for another image."""
    options = {param.name: param for param in _command(name).params}
    for shared in terminal.SHARED_OPTIONS:
        assert shared in options, f"{name} lacks --{shared.replace('_', '-')}"
    assert options["mirror"].envvar == "IMAGEBUILD_MIRROR"
    assert options["registry"].envvar == "IMAGEBUILD_REGISTRY"


def test_build_and_push_resolve_the_same_mirror_and_hash_alike(site, monkeypatch):
    """With IMAGEBUILD_MIRROR set to a runtime profile (it changes the content hash), `push`
    computes the hash `build` built under."""
    root, _ = site
    _profile(root, 'runtime = true\n[pypi]\nindex_url = "http://127.0.0.1:3141/simple"\n')
    seen = {}
    monkeypatch.setattr(pipeline, "build", lambda config, *_a, **_k: seen.setdefault("build", config) and [])
    monkeypatch.setattr(pipeline, "push", lambda config, *_a, **_k: seen.setdefault("push", config) and [])
    monkeypatch.chdir(root)
    runner = CliRunner()
    for command in (["build", "base", "--json"], ["push", "base", "--json"]):
        result = runner.invoke(app, command, env={"IMAGEBUILD_MIRROR": "site"})
        assert result.exit_code == 0, result.output
    built, pushed = seen["build"], seen["push"]
    assert built.mirror is not None and pushed.mirror == built.mirror and pushed.trust == built.trust
    hashes = [
        pipeline.prepare(Fetcher(config, print), plan(config.project, ["base"]))[-1].content_hash for config in (built, pushed)
    ]
    upstream = resolve(RunOptions(mirror="none"), _env(root, {}), load_project(root))
    assert hashes[0] == hashes[1] != pipeline.prepare(Fetcher(upstream, print), plan(upstream.project, ["base"]))[-1].content_hash


# -- every download trusts the bundle ---------------------------------------------------------------


def test_the_debian_index_lookup_trusts_the_profiles_ca(site, tmp_path):
    """`archive.package_indexes` ignored --ca-cert and the profile's ca_cert."""
    root, tls = site
    served = tmp_path / "served"
    for path, digit in SUITE_FILES.items():
        (served / path).parent.mkdir(parents=True, exist_ok=True)
        (served / path).write_text(IN_RELEASE.format(digest=digit * 64))
    with https_files(served, tls) as url:
        _profile(root, f'[apt]\ndebian = "{url}/debian"\ndebian_security = "{url}/debian-security"\n')
        config = resolve(RunOptions(mirror="site"), _env(root, {}), load_project(root))
        found = package_indexes(config.debian_archive, "bookworm", "x86_64", config.mirror, config.ca_file)
        assert found == {"bookworm": "1" * 64, "bookworm-updates": "2" * 64, "bookworm-security": "3" * 64}
        with pytest.raises(LockError, match="does not answer"):
            package_indexes(config.debian_archive, "bookworm", "x86_64", config.mirror, None)


def test_locks_run_uv_and_git_with_the_merged_bundle(site, tmp_path):
    """lock's uv and git calls did not trust the profile's ca_cert."""
    root, tls = site
    host = tmp_path / "host.pem"
    host.write_bytes(_pem(tmp_path, "host"))
    config = resolve(RunOptions(mirror="site"), _env(root, {"SSL_CERT_FILE": str(host), "PATH": "/usr/bin:/bin"}), load_project(root))
    env = Fetcher(config, print).git_env
    assert config.ca_file is not None
    for variable in ("SSL_CERT_FILE", "GIT_SSL_CAINFO", "REQUESTS_CA_BUNDLE", "PIP_CERT"):
        assert env[variable] == str(config.ca_file)
    trusted = config.ca_file.read_bytes()
    assert tls.ca_pem.strip() in trusted and host.read_bytes().strip() in trusted


def test_a_kept_ca_is_the_bundle_the_build_trusted(site, make_project, tmp_path):
    """`[ca] keep = true` baked the host's bundle, not the one with the profile's ca_cert."""
    root, tls = site
    make_project.recipe("kept", 'parent = "base"\n[ca]\nkeep = true\n')
    host = tmp_path / "host.pem"
    host.write_bytes(_pem(tmp_path, "host"))
    config = resolve(RunOptions(mirror="site"), _env(root, {"REQUESTS_CA_BUNDLE": str(host)}), load_project(root))
    context = pipeline.prepare(Fetcher(config, print), plan(config.project, ["kept"]))[-1]
    kept = {item.arcname: item.data for item in context.rendered.files}["imagebuild/ca-bundle.pem"]
    served = build_environment(config.mirror, config.logins(), config.ca_pem, config.debian_archive).ca_bundle
    assert kept == served == config.ca_pem
    assert tls.ca_pem.strip() in kept and host.read_bytes().strip() in kept


def test_the_mirror_variable_counts_for_commands_without_the_flag(site):
    """`hub up` builds missing images: with IMAGEBUILD_MIRROR it uses the mirror `build` used."""
    root, _ = site
    config = resolve(RunOptions(), _env(root, {"IMAGEBUILD_MIRROR": "site", "IMAGEBUILD_REGISTRY": "r.example.org"}), load_project(root))
    assert config.mirror is not None and config.mirror.name == "site"
    assert config.registry == "r.example.org"
    assert resolve(RunOptions(mirror="none"), _env(root, {"IMAGEBUILD_MIRROR": "site"}), load_project(root)).mirror is None


def test_registry_credentials_are_read_once_with_the_configuration(site):
    root, _ = site
    environ = {"IMAGEBUILD_REGISTRY_USER": "ci", "IMAGEBUILD_REGISTRY_PASSWORD": "s3cret"}
    config = resolve(RunOptions(registry="registry.example.org"), _env(root, environ), load_project(root))
    assert config.registry == "registry.example.org"
    assert config.registry_login == ("ci", "s3cret")
    assert "s3cret" not in repr(config)
