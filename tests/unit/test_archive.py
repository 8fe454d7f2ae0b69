"""Reading a Debian suite's package index digest from its InRelease file."""

from imagebuild.inputs.archive import index_digest

IN_RELEASE = """\
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

Codename: bookworm-security
Date: Mon, 30 Nov 2026 20:12:06 UTC
MD5Sum:
 0123456789abcdef0123456789abcdef   1234 main/binary-amd64/Packages
SHA256:
 {other}   98765 main/binary-amd64/Packages.xz
 {amd64}   654321 main/binary-amd64/Packages
 {arm64}   654000 main/binary-arm64/Packages
-----BEGIN PGP SIGNATURE-----
"""


def test_the_sha256_of_the_uncompressed_index_of_the_architecture():
    text = IN_RELEASE.format(other="1" * 64, amd64="2" * 64, arm64="3" * 64)
    assert index_digest(text, "main/binary-amd64/Packages") == "2" * 64
    assert index_digest(text, "main/binary-arm64/Packages") == "3" * 64
    assert index_digest(text, "main/binary-riscv64/Packages") is None
