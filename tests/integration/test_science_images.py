"""The product: aiidalab and pyiron build on base and pass their own smoke notebooks and
base's (a child must not break what its parent promised)."""

import json

import pytest

from imagebuild import pipeline
from imagebuild.ca import read_ca_bundle
from tests.conftest import offline_fetcher
from tests.integration.conftest import QUIET, smoke_of

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("name", ["aiidalab", "pyiron"])
def test_science_image_builds_and_passes_smoke(engine, repo_project, base_build, name):
    outcomes = pipeline.build(repo_project, [name], fetcher=offline_fetcher(read_ca_bundle(), offline=False), reporter=QUIET)
    assert [o.name for o in outcomes] == ["base", name]
    assert outcomes[0].image_id == base_build.image_id  # the parent is shared, not rebuilt
    child = outcomes[-1]
    image = engine.image(pipeline.latest_ref(repo_project, name))
    assert image is not None and image.id == child.image_id
    assert image.labels["io.imagebuild.base"] == base_build.ref
    smoke = smoke_of(repo_project, engine, child)
    assert [(n.owner, n.ok) for n in smoke.notebooks] == [("base", True), (name, True)], smoke
    results = json.loads((repo_project.output_dir / name / "smoke" / "smoke.json").read_text())
    assert [(item["owner"], item["ok"]) for item in results] == [("base", True), (name, True)]
