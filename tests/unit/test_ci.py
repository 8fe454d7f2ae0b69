"""The build graph as a CI matrix: levels, needs, each job's command, the GitHub workflow."""

from pathlib import Path

import yaml
from typer.testing import CliRunner

from imagebuild.ci import github_workflow, job_id, matrix
from imagebuild.cli.main import app
from imagebuild.model.project import load_project
from imagebuild.plan import plan

REPO = Path(__file__).resolve().parents[2]


def test_levels_follow_the_parents_and_commands_hand_them_over(make_project):
    make_project.recipe("child", 'parent = "base"\n')
    make_project.recipe("grandchild", 'parent = "child"\n')
    make_project.recipe("sibling", 'parent = "base"\n')
    jobs = {job.image: job for job in matrix(plan(load_project(make_project.root), [], everything=True))}
    assert {name: (job.level, job.needs) for name, job in jobs.items()} == {
        "base": (0, ()), "child": (1, ("base",)), "grandchild": (2, ("child",)), "sibling": (1, ("base",)),
    }
    assert jobs["grandchild"].command({"child": "sha256:" + "a" * 64}) == [
        "imagebuild", "build", "grandchild", "--from-registry", "--push", "--json", "--parent-digest=child=sha256:" + "a" * 64,
    ]


def test_the_workflow_has_a_job_per_image_that_needs_its_parents_job(make_project):
    make_project.recipe("child", 'parent = "base"\n')
    workflow = yaml.safe_load(github_workflow(matrix(plan(load_project(make_project.root), [], everything=True))))
    jobs = workflow["jobs"]
    assert set(jobs) == {job_id("base"), job_id("child")}
    child = jobs[job_id("child")]
    assert child["needs"] == [job_id("base")] and "needs" not in jobs[job_id("base")]
    run = next(step["run"] for step in child["steps"] if step.get("id") == "build")
    assert "--parent-digest=base=${{ needs.image-base.outputs.digest }}" in run
    assert child["outputs"]["digest"] == "${{ steps.build.outputs.digest }}"


def test_the_committed_workflow_is_the_one_of_the_recipes(monkeypatch):
    """CI's guard, as for locks: a recipe added or re-parented without `imagebuild ci github` fails here."""
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, ["ci", "github", "--check"])
    assert result.exit_code == 0, result.output
