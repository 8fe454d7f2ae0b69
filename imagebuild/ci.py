"""The build graph as a CI matrix: one job per image, parents' jobs first, each image handed to
its children through the registry by content tag (handoff.py). imagebuild does not schedule
machines itself; `plan --json` gives any CI system the graph (level, needs, command), and
`imagebuild ci github` writes it as a GitHub Actions workflow."""

from dataclasses import dataclass

from imagebuild.build.render import templates
from imagebuild.plan import BuildPlan


@dataclass(frozen=True)
class MatrixJob:
    """One image's job: the images it needs (its parent), its level (jobs of a level may run at
    the same time, on different machines) and the command it runs."""

    image: str
    needs: tuple[str, ...]
    level: int

    def command(self, parent_digests: dict[str, str] | None = None) -> list[str]:
        """`imagebuild build IMAGE --from-registry --push`, with each parent's pushed digest when known."""
        digests = parent_digests or {}
        pinned = [f"--parent-digest={name}={digests[name]}" for name in self.needs if name in digests]
        return ["imagebuild", "build", self.image, "--from-registry", "--push", "--json", *pinned]


def matrix(plans: list[BuildPlan]) -> list[MatrixJob]:
    """The jobs of `plans` (parents first, as plan() orders them)."""
    names = {item.name for item in plans}
    levels: dict[str, int] = {}
    jobs = []
    for item in plans:
        parent = item.recipe.spec.parent
        needs = (parent,) if parent in names else ()
        levels[item.name] = levels[parent] + 1 if parent in names else 0
        jobs.append(MatrixJob(item.name, needs, levels[item.name]))
    return jobs


def github_workflow(jobs: list[MatrixJob]) -> str:
    """A GitHub Actions workflow with one job per image; a job's `digest` output is what its
    children pass as --parent-digest."""
    return templates.get_template("ci/github.yml.j2").render(
        jobs=[
            {
                "id": job_id(job.image),
                "image": job.image,
                "needs": [job_id(name) for name in job.needs],
                "command": " ".join(job.command({name: f"${{{{ needs.{job_id(name)}.outputs.digest }}}}" for name in job.needs})),
            }
            for job in jobs
        ]
    )


def job_id(image: str) -> str:
    return f"image-{image}"
