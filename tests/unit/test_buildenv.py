import os
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from imagebuild.build.buildenv import BuildEnvironment, BuildEnvServer
from imagebuild.build.render import support_file
from imagebuild.mirrors.hostenv import CA_VARIABLES
from tests.conftest import free_port


def _get(url: str) -> bytes:
    return urllib.request.urlopen(url).read()


def test_serves_what_the_build_asks_for_and_nothing_else():
    port = free_port()
    environment = BuildEnvironment(ca_bundle=b"PEM", variables=(("PIP_INDEX_URL", "http://u:p@m/simple"),))
    with BuildEnvServer(environment, port) as server:
        assert server.server is None  # nothing listens until a build asks
        url = server.url()
        assert url == f"http://127.0.0.1:{port}"
        assert _get(f"{url}/ca.pem") == b"PEM"
        script = _get(f"{url}/env").decode()
        assert "export PIP_INDEX_URL=http://u:p@m/simple\n" in script
        assert "export IMAGEBUILD_HAS_CA=1\n" in script
        assert "IMAGEBUILD_HAS_APT" not in script
        with pytest.raises(urllib.error.HTTPError):
            _get(f"{url}/apt.sed")


def test_starts_lazily_and_runs_the_start_hook_once():
    started = []
    with BuildEnvServer(BuildEnvironment(apt_sed="s#a#b#\n"), free_port(), on_start=lambda: started.append(1)) as server:
        assert started == []
        server.url()
        server.url()
        assert started == [1]
        assert _get(f"{server.url()}/apt.sed") == b"s#a#b#\n"


def test_busy_port_falls_back_to_a_free_one():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with BuildEnvServer(BuildEnvironment(ca_bundle=b"PEM"), taken) as server:
            url = server.url()
            assert not url.endswith(f":{taken}")
            assert _get(f"{url}/ca.pem") == b"PEM"


def test_nothing_to_serve_means_no_server_and_an_empty_url():
    started = []
    with BuildEnvServer(BuildEnvironment(), free_port(), on_start=lambda: started.append(1)) as server:
        assert server.url() == ""
        assert server.server is None
        assert started == []


def test_values_with_shell_characters_survive_the_env_script(tmp_path):
    """The env script is sourced by sh inside the build; quoting must hold for any password."""
    tricky = "p'a\"s$s `w` \\ord;"
    environment = BuildEnvironment(variables=(("SECRET", tricky),))
    script = environment.documents()["/env"].decode()
    (tmp_path / "env").write_text(script)
    shown = subprocess.run(
        ["sh", "-c", '. "$1"; printf %s "$SECRET"', "sh", str(tmp_path / "env")], capture_output=True, text=True
    )
    assert shown.stdout == tricky


def test_helper_runs_the_command_unchanged_without_a_build_environment(tmp_path):
    helper = tmp_path / "with-build-env"
    helper.write_bytes(support_file("with-build-env"))
    helper.chmod(0o755)
    done = subprocess.run([str(helper), "sh", "-c", "echo $0 ok"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "sh ok"


def test_helper_gives_the_command_the_environment_and_leaves_nothing_behind(tmp_path):
    """On the host (Debian, as the images): the command sees the variables, the CA and
    rewritten apt sources; the temp folder holding them is gone afterwards."""
    helper = tmp_path / "with-build-env"
    helper.write_bytes(support_file("with-build-env"))
    helper.chmod(0o755)
    environment = BuildEnvironment(
        ca_bundle=b"PEM",
        variables=(("PIP_INDEX_URL", "http://127.0.0.1:9/simple"),),
        apt_sed="s#http://deb\\.debian\\.org/debian#http://mirror.example/debian#g\n",
    )
    show = 'echo "$PIP_INDEX_URL"; cat "$SSL_CERT_FILE"; echo; apt-config dump | grep -i "Dir::Etc::source"; cat "${APT_CONFIG%/apt.conf}"/sources.list.d/* "${APT_CONFIG%/apt.conf}"/sources.list; echo "$APT_CONFIG"'
    with BuildEnvServer(environment, free_port()) as server:
        done = subprocess.run(
            [str(helper), "sh", "-c", show],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "IMAGEBUILD_BUILD_ENV": server.url()},
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "http://127.0.0.1:9/simple"
    assert lines[1] == "PEM"
    assert "http://mirror.example/debian" in done.stdout
    assert "http://deb.debian.org/debian " not in done.stdout
    scratch = lines[-1].rsplit("/apt/", 1)[0]
    assert scratch.startswith("/tmp/") and not os.path.exists(scratch)


def test_helper_points_conda_and_micromamba_at_the_mirrors_channel_settings(tmp_path):
    """Commands a build runs itself (repo2docker's micromamba) resolve channel names through
    the mirror: CONDARC and MAMBARC name the served settings, which are gone afterwards."""
    helper = tmp_path / "with-build-env"
    helper.write_bytes(support_file("with-build-env"))
    helper.chmod(0o755)
    condarc = "channel_alias: http://mirror.example/conda\ncustom_channels:\n  conda-forge: http://mirror.example/cf\n"
    with BuildEnvServer(BuildEnvironment(condarc=condarc), free_port()) as server:
        done = subprocess.run(
            [str(helper), "sh", "-c", 'cat "$CONDARC"; echo "$CONDARC $MAMBARC"'],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "IMAGEBUILD_BUILD_ENV": server.url()},
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(condarc)
    conda_path, mamba_path = done.stdout.splitlines()[-1].split()
    assert conda_path == mamba_path and not os.path.exists(conda_path)


def test_helper_points_every_program_at_the_served_ca_git_included(tmp_path):
    """Inside builds pip, uv, rattler, requests, git and curl each read their own CA variable;
    git's (GIT_SSL_CAINFO) was missing, so a git+https requirement behind a private CA failed."""
    helper = tmp_path / "with-build-env"
    helper.write_bytes(support_file("with-build-env"))
    helper.chmod(0o755)
    show = "; ".join(f'printf "%s=%s\\n" {name} "${name}"; cat "${name}"' for name in CA_VARIABLES) + '; cat "$APT_CONFIG"'
    with BuildEnvServer(BuildEnvironment(ca_bundle=b"PEM-OF-THE-RUN\n"), free_port()) as server:
        done = subprocess.run(
            ["bash", str(helper), "sh", "-c", show],
            capture_output=True,
            text=True,
            env={"PATH": os.environ["PATH"], "IMAGEBUILD_BUILD_ENV": server.url(), "TMPDIR": str(tmp_path)},
            check=True,
        )
    lines = done.stdout.splitlines()
    for name in CA_VARIABLES:
        assert any(line.startswith(f"{name}={tmp_path}/") for line in lines), name
    assert lines.count("PEM-OF-THE-RUN") == len(CA_VARIABLES)
    assert "GIT_SSL_CAINFO" in CA_VARIABLES
    ca_info = next(line for line in lines if line.startswith("Acquire::https::CaInfo"))  # apt's https sources
    assert ca_info.endswith('/ca.pem";')
