"""Bad builds and bad images fail the command with the step or cell that failed, and move
no tag."""

import pytest

from tests.conftest import write_notebook
from tests.integration.conftest import imagebuild_cli

pytestmark = pytest.mark.engine


def test_failing_smoke_notebook_fails_build_and_keeps_latest(engine, base_build, make_project):
    folder = make_project.recipe("test-broken", 'parent = "base"\n[env]\nBROKEN = "yes"\n')
    write_notebook(folder / "smoke" / "fails.ipynb", "import os\nvalue = os.environ['BROKEN']", "raise RuntimeError(f'broken is {value}')")
    result = imagebuild_cli("build", "test-broken", cwd=make_project.root)
    assert result.returncode == 5, result.stdout + result.stderr
    assert "test-broken/fails.ipynb, cell 2: RuntimeError: broken is yes" in result.stderr
    assert "Traceback" not in result.stderr
    assert engine.image("imagebuild/test-broken:latest") is None
    # The parents' notebooks ran first and passed in the child image.
    smoke_json = (make_project.root / "build/test-broken/smoke/smoke.json").read_text()
    assert '"notebook": "base.ipynb"' in smoke_json


def test_build_error_names_the_step_and_exits_4(base_build, make_project):
    make_project.recipe(
        "test-fails-to-build",
        'parent = "base"\npost_build = "postBuild"\n',
        files={"postBuild": "#!/bin/bash\necho about to fail\nexit 3\n"},
    )
    result = imagebuild_cli("build", "test-fails-to-build", cwd=make_project.root)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "failed at [stage-0 " in result.stderr  # BuildKit's step, shown without its mount flags
    assert "RUN with-build-env /tmp/imagebuild/postBuild" in result.stderr
    assert "about to fail" in result.stderr
    assert (make_project.root / "build/test-fails-to-build/build.log").is_file()


def test_recipe_typo_is_one_clear_line(make_project):
    make_project.recipe("test-typo", 'parent = "base"\n[labels]\na = "b"\n[envv]\nA = "1"\n')
    result = imagebuild_cli("render", "test-typo", cwd=make_project.root)
    assert result.returncode == 2
    assert "image.toml: envv: unknown key" in result.stderr
    assert "did you mean 'env'?" in result.stderr
    assert "Traceback" not in result.stderr
