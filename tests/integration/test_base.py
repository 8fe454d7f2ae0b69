"""The root image is bootstrapped, base builds, its smoke notebook passes, and an unchanged
second build is a lookup, not a build."""

import json

import pytest

from imagebuild import pipeline
from imagebuild.build.context import HASH_LABEL
from imagebuild.reuse import latest_ref
from tests.conftest import REPO, host_trust, run_config, write_notebook
from tests.integration.conftest import QUIET, imagebuild_cli, smoke_of

pytestmark = pytest.mark.engine


def test_root_image_is_present_without_a_registry(engine, base_build):
    root = engine.image("debian:bookworm")
    assert root is not None
    assert engine.image(base_build.ref).labels["io.imagebuild.root-id"] == root.id


def test_base_builds_and_passes_its_smoke_notebook(engine, repo_project, base_build):
    image = engine.image(base_build.ref)
    assert image.labels[HASH_LABEL] == base_build.content_hash
    for label in ("created", "revision", "version", "title"):
        assert image.labels[f"org.opencontainers.image.{label}"]
    config = engine.client.images.get(image.id).attrs["Config"]
    assert config["User"] == "1000"
    assert config["Entrypoint"] == ["tini", "-g", "--", "start.sh"]
    assert config["Cmd"] == ["start-notebook.py"]
    assert engine.image(latest_ref(repo_project, "base")).id == image.id
    smoke = smoke_of(repo_project, engine, base_build)
    assert [(n.notebook, n.ok) for n in smoke.notebooks] == [("base.ipynb", True)]
    results = json.loads((repo_project.output_dir / "base" / "smoke" / "smoke.json").read_text())
    assert [(r["notebook"], r["ok"]) for r in results] == [("base.ipynb", True)]


def test_unchanged_second_build_is_reused(repo_project, base_build):
    (again,) = pipeline.build(run_config(repo_project, host_trust(), offline=False), ["base"], reporter=QUIET)
    assert again.action == "reused"
    assert again.image_id == base_build.image_id
    assert again.smoke is None  # smoke passed for this very image already


def test_single_user_server_starts_through_start_script(engine, base_build):
    output = engine.client.containers.run(
        base_build.ref, ["jupyterhub-singleuser", "--version"], remove=True, network_mode="none"
    )
    assert output.decode().strip().startswith("5.")


def test_admin_notebook_runs_with_smoke(base_build, tmp_path):
    passing = write_notebook(tmp_path / "site-check.ipynb", "import jupyterlab\nprint(jupyterlab.__version__)")
    result = imagebuild_cli("smoke", "base", "--notebook", str(passing), "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert '"notebook": "site-check.ipynb"' in result.stdout
    assert '"notebook": "base.ipynb"' in result.stdout


def test_failing_admin_notebook_names_the_cell(base_build, tmp_path):
    failing = write_notebook(tmp_path / "broken.ipynb", "x = 1", "1 / 0")
    result = imagebuild_cli("smoke", "base", "--notebook", str(failing), cwd=REPO)
    assert result.returncode == 5, result.stderr
    assert "extra/broken.ipynb, cell 2: ZeroDivisionError" in result.stderr
    assert "1 / 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_images_lists_builds_with_tags_and_hashes(base_build):
    result = imagebuild_cli("images", "--json", cwd=REPO)
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert all(row["tags"] for row in listed if row["content_hash"]), listed  # intermediates of failed child builds are not listed
    rows = [row for row in listed if row["content_hash"] == base_build.content_hash]
    assert len(rows) == 1, rows
    assert rows[0]["image"] == "base"
    assert base_build.ref in rows[0]["tags"]
    assert rows[0]["content_hash"] == base_build.content_hash
    assert rows[0]["size_bytes"] > 100_000_000
