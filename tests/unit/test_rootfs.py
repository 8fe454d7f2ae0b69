import pytest

from imagebuild.config import DEFAULT_ARCHIVE, host_archive
from imagebuild.inputs.target import debian_suite


@pytest.mark.parametrize(
    ("ref", "suite"),
    [("debian:bookworm", "bookworm"), ("docker.io/library/debian:trixie", "trixie"), ("ubuntu:24.04", None),
     ("debian:bookworm-slim", None)],
)
def test_debian_suite(ref, suite):
    assert debian_suite(ref) == suite


def test_host_archive_prefers_deb822_and_skips_security(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert host_archive(tmp_path) == "http://mirror.example/debian"


def test_host_archive_reads_one_line_format_and_falls_back(tmp_path):
    assert host_archive(tmp_path) == DEFAULT_ARCHIVE
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://ftp.example/debian bookworm main\n")
    assert host_archive(tmp_path) == "http://ftp.example/debian"
