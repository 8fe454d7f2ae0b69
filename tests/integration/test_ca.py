"""A custom CA is trusted by build downloads, and is in no layer, env var or history entry
of the final image unless the recipe keeps it."""

import json
import secrets

import pytest

from imagebuild import pipeline
from imagebuild.errors import BuildError
from imagebuild.model.project import load_project
from tests.conftest import run_config, write_notebook
from tests.integration.conftest import QUIET, saved_image_blobs

pytestmark = pytest.mark.engine

PIP_CHILD = """
parent = "base"
[python]
requirements = "requirements.txt"
[env]
NONCE = "{nonce}"
"""


def test_ca_is_trusted_during_build_and_absent_from_image(engine, base_build, test_ca, make_project):
    make_project.recipe(
        "test-ca-child", PIP_CHILD.format(nonce=secrets.token_hex(8)), files={"requirements.txt": "colorama==0.4.6\n"}
    )
    project = load_project(make_project.root)
    outcome = pipeline.build(run_config(project, test_ca.trusted_bundle), ["test-ca-child"], reporter=QUIET)[-1]
    assert outcome.action == "built"
    blobs = saved_image_blobs(engine, outcome.ref)
    assert blobs, "docker save returned nothing"
    assert not [blob for blob in blobs if test_ca.marker in blob]
    image = engine.client.images.get(outcome.ref)  # the SDK's image: its configuration and history
    env = "\n".join(image.attrs["Config"]["Env"])
    assert "SSL_CERT_FILE" not in env and "PIP_CERT" not in env
    history = json.dumps(image.history())
    assert "BEGIN CERTIFICATE" not in history and test_ca.marker.decode() not in history


def test_build_trusts_only_the_given_ca(base_build, test_ca, make_project):
    """With a bundle lacking the network's CA, HTTPS to PyPI fails: the bundle is what is trusted."""
    make_project.recipe(
        "test-ca-wrong", PIP_CHILD.format(nonce=secrets.token_hex(8)), files={"requirements.txt": "colorama==0.4.6\n"}
    )
    project = load_project(make_project.root)
    with pytest.raises(BuildError, match=r"(?i)certificate|ssl|tls"):
        pipeline.build(run_config(project, test_ca.alone), ["test-ca-wrong"], reporter=QUIET)


def test_recipe_can_keep_the_ca_for_runtime(engine, base_build, test_ca, make_project):
    folder = make_project.recipe("test-ca-kept", 'parent = "base"\n[ca]\nkeep = true\n')
    write_notebook(
        folder / "smoke" / "ca.ipynb",
        "import os, pathlib\nbundle = pathlib.Path(os.environ['SSL_CERT_FILE'])\n"
        f"assert {test_ca.marker.decode()!r} in bundle.read_text()\n"
        "assert os.environ['PIP_CERT'] == os.environ['REQUESTS_CA_BUNDLE'] == str(bundle)",
    )
    project = load_project(make_project.root)
    outcome = pipeline.build(run_config(project, test_ca.trusted_bundle), ["test-ca-kept"], reporter=QUIET)[-1]
    assert outcome.smoke is not None and outcome.smoke.ok
    assert any(test_ca.marker in blob for blob in saved_image_blobs(engine, outcome.ref))
