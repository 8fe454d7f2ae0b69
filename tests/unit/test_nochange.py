"""A run that reuses its images asks the engine only what it must (bench/nochange.py measures it)."""

import json

from imagebuild.build.records import Image
from imagebuild.model.project import load_project
from imagebuild.pipeline import prepare
from imagebuild.plan import plan
from imagebuild.provenance import write_image_manifest
from imagebuild.publish.manifest import INVENTORY_PATH
from tests.conftest import offline_fetcher

INVENTORY = {"os_packages": {"bash": "5.2.15-2+b7"}, "python_packages": {"jupyterlab": "4.4.0"}}


class InventoryEngine:
    """Stands in for the engine: the one call a manifest may make, counted."""

    def __init__(self) -> None:
        self.copied: list[str] = []

    def read_file(self, ref: str, path: str) -> bytes:
        assert path == INVENTORY_PATH
        self.copied.append(ref)
        return json.dumps(INVENTORY).encode()


def image(created: str, size: int = 682_000_000) -> Image:
    return Image(id=f"sha256:{created}", tags=(), labels={"org.opencontainers.image.created": created}, size=size)


def test_a_reused_image_s_manifest_copies_nothing_out_of_the_image(make_project):
    project = load_project(make_project.root)
    (context,) = prepare(offline_fetcher(project), plan(project, ["base"]))
    engine = InventoryEngine()
    built = image("2026-12-06T20:55:14+00:00")

    write_image_manifest(project, engine, context, built, None, None, None)  # type: ignore[arg-type]
    write_image_manifest(project, engine, context, built, None, None, None)  # type: ignore[arg-type]
    assert len(engine.copied) == 1  # the second run took the inventory from the first run's manifest
    written = json.loads((project.output_dir / "base" / "manifest.json").read_text())
    assert written["os_packages"] == INVENTORY["os_packages"]
    assert written["python_packages"] == INVENTORY["python_packages"]

    for other in (image("2026-12-07T01:00:00+00:00"), image("2026-12-06T20:55:14+00:00", size=1)):
        write_image_manifest(project, engine, context, other, None, None, None)  # type: ignore[arg-type]
    assert len(engine.copied) == 3  # another build under the same content tag: read from the image again


def test_an_unreadable_earlier_manifest_is_read_from_the_image_again(make_project):
    project = load_project(make_project.root)
    (context,) = prepare(offline_fetcher(project), plan(project, ["base"]))
    (project.output_dir / "base").mkdir(parents=True)
    engine = InventoryEngine()
    for earlier in ("{ not json", "[]"):
        (project.output_dir / "base" / "manifest.json").write_text(earlier)
        write_image_manifest(project, engine, context, image("2026-12-06T20:55:14+00:00"), None, None, None)  # type: ignore[arg-type]
    assert len(engine.copied) == 2
