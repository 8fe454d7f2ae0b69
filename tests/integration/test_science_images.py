"""The product: aiidalab and pyiron build on base and pass their own smoke notebooks and
base's (a child must not break what its parent promised). aiidalab with its SSSP asset carried
in (real pseudopotentials from the distribution) runs a pw.x SCF through the daemon; its home
volume carries the profile, finished calculations and the daemon across restarts."""

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import time

import pytest

from imagebuild import pipeline
from imagebuild.build.render import ASSET_LABEL
from imagebuild.inputs.fetch import Fetcher
from imagebuild.model.project import load_project
from imagebuild.model.recipe import load_recipe
from imagebuild.reuse import latest_ref
from tests.conftest import REPO, host_trust, run_config
from tests.integration.conftest import (
    AIIDA_CHECK,
    AIIDA_SUBMIT,
    QUIET,
    aiida_python,
    smoke_of,
)

pytestmark = pytest.mark.engine

SSSP = "sssp-efficiency-pbe"
FAMILY_LISTED = """
families = subprocess.run(["aiida-pseudo", "list"], capture_output=True, text=True, check=True).stdout
assert "SSSP-1.3-PBE-efficiency" in families, families
"""


@pytest.mark.parametrize("name", ["aiidalab", "pyiron"])
def test_science_image_builds_and_passes_smoke(engine, repo_project, base_build, name):
    outcomes = pipeline.build(run_config(repo_project, host_trust(), offline=False), [name], reporter=QUIET)
    assert [o.name for o in outcomes] == ["base", name]
    assert outcomes[0].image_id == base_build.image_id  # the parent is shared, not rebuilt
    child = outcomes[-1]
    image = engine.image(latest_ref(repo_project, name))
    assert image is not None and image.id == child.image_id
    assert image.labels["io.imagebuild.base"] == base_build.ref
    smoke = smoke_of(repo_project, engine, child)
    recipes = [repo_project.recipes["base"], repo_project.recipes[name]]
    expected = {(recipe.name, path.name) for recipe in recipes for path in recipe.notebooks}
    assert {(n.owner, n.notebook) for n in smoke.notebooks} == expected
    assert all(n.ok for n in smoke.notebooks), smoke
    for skipped in (n for n in smoke.notebooks if n.skipped):
        # only a notebook whose optional asset this machine could not fetch (SSSP) may be skipped
        assert skipped.notebook == "aiida_qe_scf.ipynb" and f"{ASSET_LABEL}{SSSP}" not in image.labels, skipped
    results = json.loads((repo_project.output_dir / name / "smoke" / "smoke.json").read_text())
    assert {(item["owner"], item["notebook"]) for item in results} == expected


@pytest.fixture(scope="module")
def aiidalab_with_sssp(engine, base_build, tmp_path_factory, distribution_pseudo_archive):
    """The bundled aiidalab recipe with its SSSP asset carried in with `assets add`: an archive of
    the distribution's real UPF files, declared with its checksum (its own repository, so the
    product's tags stay where they are)."""
    work = tmp_path_factory.mktemp("sssp")
    root = work / "project"
    for name in ("base", "aiidalab"):
        shutil.copytree(REPO / "images" / name, root / "images" / name)
    (root / "imagebuild.toml").write_text('[build]\nrepository = "imagebuild-sssp"\n')
    recipe = root / "images" / "aiidalab" / "image.toml"
    declared = next(asset for asset in load_recipe(recipe).spec.assets if asset.name == SSSP)
    sha256 = hashlib.sha256(distribution_pseudo_archive.read_bytes()).hexdigest()
    recipe.write_text(recipe.read_text().replace(declared.sha256, sha256))
    project = load_project(root)
    config = dataclasses.replace(run_config(project, host_trust(), offline=False), cache_dir=work)  # assets under work/assets
    Fetcher(config, print).cache.add(distribution_pseudo_archive, sha256)
    outcome = pipeline.build(config, ["aiidalab"], reporter=QUIET)[-1]
    return project, outcome, sha256


def test_aiidalab_with_the_sssp_asset_runs_every_notebook_including_the_pw_scf(engine, aiidalab_with_sssp):
    project, outcome, sha256 = aiidalab_with_sssp
    assert engine.image(outcome.ref).labels[f"{ASSET_LABEL}{SSSP}"] == sha256
    smoke = smoke_of(project, engine, outcome)
    ran = {n.notebook for n in smoke.notebooks if n.ok and not n.skipped}
    assert {"aiida_services.ipynb", "aiida_workchain.ipynb", "aiida_qe_scf.ipynb", "base.ipynb"} <= ran, smoke
    assert all(n.ok and not n.skipped for n in smoke.notebooks), smoke


def test_the_home_volume_carries_profile_calculations_and_daemon_across_restarts(engine, aiidalab_with_sssp):
    """First start, a stop and start of the same container, then a new container (as a hub makes
    one per spawn) on the same home volume with one CPU: nothing is initialised twice (default apps
    are tried once), the finished calculation and the family are still there, the daemon runs
    again, MPI follows the CPU limit."""
    _project, outcome, _sha256 = aiidalab_with_sssp
    volume = engine.client.volumes.create(name=f"imagebuild-test-home-{secrets.token_hex(4)}")
    run = {"detach": True, "network_mode": "none", "volumes": {volume.name: {"bind": "/home/jovyan", "mode": "rw"}}}
    containers = []
    try:
        # A default app to install on first start; the registry is out of reach (no network), so
        # the hook warns and the start goes on.
        apps = {"AIIDALAB_DEFAULT_APPS": "hello-world", "AIIDA_SERVICES": "always"}
        first = engine.client.containers.run(outcome.ref, ["sleep", "infinity"], environment=apps, **run)
        containers.append(first)
        uuid = aiida_python(first, AIIDA_SUBMIT).split("UUID ")[1].split()[0]
        first.stop(timeout=5)
        first.start()
        checked = aiida_python(first, AIIDA_CHECK + FAMILY_LISTED, uuid)
        assert f"MPIPROCS {len(os.sched_getaffinity(0))}" in checked, checked
        logs = first.logs().decode(errors="replace")
        assert logs.count("Sourcing shell script: /usr/local/bin/before-notebook.d/20-aiida-services.sh") == 2, logs  # two starts
        assert logs.count("created AiiDA profile") == 1, logs
        assert logs.count("creating the PostgreSQL cluster") == 1, logs
        assert logs.count(f"installed asset '{SSSP}'") == 1, logs
        assert logs.count("installing the default AiiDAlab apps ['hello-world'] failed") == 1, logs
        first.remove(force=True)
        containers.remove(first)
        second = engine.client.containers.run(
            outcome.ref, ["sleep", "infinity"], nano_cpus=10**9, environment={"AIIDA_SERVICES": "always"}, **run
        )
        containers.append(second)
        started = time.monotonic()
        checked = aiida_python(second, AIIDA_CHECK + FAMILY_LISTED, uuid)
        print(f"new container on the same home: AiiDA ready in {time.monotonic() - started:.1f} s")
        assert "MPIPROCS 1" in checked, checked
        logs = second.logs().decode(errors="replace")
        assert "created AiiDA profile" not in logs and "creating the PostgreSQL cluster" not in logs, logs
    finally:
        for container in containers:
            container.remove(force=True)
        volume.remove(force=True)
