import json

from imagebuild.build.render import ASSET_LABEL, DEV_PACKAGE_LABEL, SOURCE_LABEL
from imagebuild.publish.manifest import (
    ORDERS,
    Change,
    ImageFacts,
    changes,
    diff,
    manifest,
    markdown,
    write,
)


def _facts(ref, *, os_packages, python_packages, commit, asset, size):
    labels = {
        f"{DEV_PACKAGE_LABEL}probe-widgets": json.dumps({"url": "file:///r", "ref": "feature", "commit": commit}),
        f"{ASSET_LABEL}pseudos": asset,
        "io.imagebuild.base": "imagebuild/base:sha-0123456789ab",
    }
    inventory = json.dumps({"os_packages": os_packages, "python_packages": python_packages}).encode()
    return ImageFacts.of(ref, labels, size, inventory)


def test_debian_versions_order_by_dpkg_rules_not_as_text():
    found = changes(
        {"libssl3": "3.0.15-1~deb12u1", "tzdata": "2024a-0+deb12u1", "gone": "1.0-1", "epoch": "1.10-1"},
        {"libssl3": "3.0.17-1~deb12u2", "tzdata": "2023c-8", "new": "2.0-1", "epoch": "1:1.2-1"},
        ORDERS["os_packages"],
    )
    assert found == [
        Change("epoch", "1.10-1", "1:1.2-1", "upgraded"),  # an epoch outranks the upstream version
        Change("gone", "1.0-1", None, "removed"),
        Change("libssl3", "3.0.15-1~deb12u1", "3.0.17-1~deb12u2", "upgraded"),
        Change("new", None, "2.0-1", "added"),
        Change("tzdata", "2024a-0+deb12u1", "2023c-8", "downgraded"),
    ]


def test_python_versions_follow_pep440_and_unparsable_ones_are_just_changed():
    order = ORDERS["python_packages"]
    assert changes({"numpy": "1.26.4", "x": "abc"}, {"numpy": "1.9.0", "x": "abd"}, order) == [
        Change("numpy", "1.26.4", "1.9.0", "downgraded"),
        Change("x", "abc", "abd", "changed"),
    ]
    assert changes({"aiida-core": "2.9.0rc1"}, {"aiida-core": "2.9.0"}, order)[0].kind == "upgraded"


def test_diff_names_packages_dev_commits_assets_and_size():
    before = _facts(
        "aiidalab:2026-11-29", os_packages={"lammps": "1-1"}, python_packages={"aiida-core": "2.9.3"}, commit="a" * 40, asset="1" * 64, size=900
    )
    after = _facts(
        "aiidalab:2026-11-30", os_packages={"lammps": "1-1"}, python_packages={"aiida-core": "2.9.4"}, commit="b" * 40, asset="1" * 64, size=1000
    )
    result = diff(before, after)
    assert result.packages["os_packages"] == []
    assert result.packages["python_packages"] == [Change("aiida-core", "2.9.3", "2.9.4", "upgraded")]
    assert result.dev_packages == [Change("probe-widgets", "a" * 40, "b" * 40, "changed")]
    assert result.assets == [] and not result.empty
    text = result.markdown()
    assert "## aiidalab:2026-11-29 → aiidalab:2026-11-30" in text
    assert "| aiida-core | upgraded | 2.9.3 | 2.9.4 |" in text and f"| probe-widgets | changed | {'a' * 40} |" in text
    assert diff(before, before).empty and "No package, dev package or asset changed." in diff(before, before).markdown()


def test_manifest_documents_inventory_provenance_smoke_and_tags(tmp_path):
    facts = _facts("imagebuild/aiidalab:sha-1", os_packages={"postgresql-15": "15.18-0+deb12u1"}, python_packages={"aiida-core": "2.9.4"}, commit="c" * 40, asset="2" * 64, size=1_910_000_000)
    smoke = [{"owner": "aiidalab", "notebook": "a.ipynb", "ok": True, "seconds": 7.0, "skipped": ""}]
    published = {"registry": "127.0.0.1:5000", "digest": "sha256:d", "tags": [{"tag": "latest", "action": "pushed"}, {"tag": "2026-11-30", "action": "held"}]}
    document = manifest(facts, name="aiidalab", content_hash="f" * 64, mirror="tuna", smoke=smoke, published=published)
    assert document["tags"] == ["latest"] and document["parent"] == "imagebuild/base:sha-0123456789ab"
    assert document["dev_packages"]["probe-widgets"]["commit"] == "c" * 40 and document["assets"] == {"pseudos": "2" * 64}
    assert document["python_packages"] == {"aiida-core": "2.9.4"} and document["mirror"] == "tuna"
    write(document, tmp_path)
    assert json.loads((tmp_path / "manifest.json").read_text()) == document
    text = (tmp_path / "manifest.md").read_text()
    assert text == markdown(document)
    assert "| aiidalab/a.ipynb | passed | 7.0 |" in text and "| postgresql-15 | 15.18-0+deb12u1 |" in text
    assert "| size (uncompressed) | 1.91 GB |" in text and "| mirror | tuna |" in text


def test_a_source_images_commit_is_in_its_manifest_and_its_diff():
    def facts(commit):
        labels = {SOURCE_LABEL: json.dumps({"url": "https://git.example.edu/course.git", "ref": "fall", "commit": commit})}
        return ImageFacts.of(f"course:{commit[:7]}", labels, 1, b"{}")

    changed = diff(facts("a" * 40), facts("b" * 40))
    assert changed.dev_packages == [Change("[source]", "a" * 40, "b" * 40, "changed")]
    document = manifest(facts("b" * 40), name="course", content_hash="c" * 64, mirror=None, smoke=[], published=None)
    assert document["source"]["commit"] == "b" * 40
    assert f"| source | https://git.example.edu/course.git fall at {'b' * 40} |" in markdown(document)
