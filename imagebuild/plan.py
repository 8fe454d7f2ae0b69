"""Step 2, plan: resolve parents and order the images to build."""

from dataclasses import dataclass

from imagebuild.errors import RecipeError
from imagebuild.model.project import Project
from imagebuild.model.recipe import Recipe


@dataclass(frozen=True)
class BuildPlan:
    """One image to produce, with its ancestors (nearest first) for inherited smoke notebooks."""

    recipe: Recipe
    ancestors: tuple[Recipe, ...]

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def bottom(self) -> Recipe:
        """The recipe at the bottom of this image's chain (the image's own, without a parent)."""
        return self.ancestors[-1] if self.ancestors else self.recipe

    @property
    def on_dockerfile_recipe(self) -> bool:
        """Whether the image builds on a dockerfile recipe: an image imagebuild's layers did not lay out."""
        return bool(self.ancestors) and self.bottom.spec.dockerfile is not None

    @property
    def root_image(self) -> str:
        """The root reference at the bottom of this image's chain, e.g. 'debian:bookworm'.

        A chain on a [source] or dockerfile recipe has none: that Dockerfile names its bases
        (RenderedImage.roots).
        """
        assert self.bottom.spec.root is not None  # guaranteed by RecipeFile's validator, for recipes without [source]
        return self.bottom.spec.root


def _ancestors(project: Project, name: str) -> tuple[Recipe, ...]:
    chain = [name]
    found: list[Recipe] = []
    recipe = project.recipes[name]
    while recipe.spec.parent is not None:
        parent = recipe.spec.parent
        if parent in chain:
            raise RecipeError(
                f"parent: cycle {' -> '.join([*chain, parent])}",
                path=recipe.path,
                hint="one image in the chain must name a 'root' instead of a 'parent'",
            )
        if parent not in project.recipes:
            raise RecipeError(
                f"parent: no recipe named '{parent}' (chain {' -> '.join([*chain, parent])})",
                path=recipe.path,
                hint=f"known images: {', '.join(sorted(project.recipes))}",
            )
        if project.recipes[parent].spec.source is not None:
            raise RecipeError(
                f"parent: '{parent}' is built by repo2docker from a [source] repository and cannot be a parent",
                path=recipe.path,
                hint="build on a layered recipe, or put these layers into the repository's Binder files",
            )
        chain.append(parent)
        recipe = project.recipes[parent]
        found.append(recipe)
    return tuple(found)


def _check_environment(item: BuildPlan) -> BuildPlan:
    """[python].environment says where a dockerfile parent's Python lives; elsewhere it means nothing."""
    if item.recipe.spec.python.environment is not None and not item.on_dockerfile_recipe:
        raise RecipeError(
            "[python].environment: this image does not build on a dockerfile recipe",
            path=item.recipe.path,
            hint="remove it: images on a 'root' chain install into the root's [python].venv",
        )
    return item


def plan(project: Project, names: list[str], *, everything: bool = False) -> list[BuildPlan]:
    """Plans for `names` and all their parents, parents first, each image once."""
    wanted = sorted(project.recipes) if everything else names
    if not wanted:
        raise RecipeError("no image named", hint="name one or more images, or pass --all")
    ordered: list[BuildPlan] = []
    seen: set[str] = set()
    for name in wanted:
        if name not in project.recipes:
            raise RecipeError(
                f"no image named '{name}'",
                path=project.root / project.config.images,
                hint=f"known images: {', '.join(sorted(project.recipes))}",
            )
        ancestors = _ancestors(project, name)
        for recipe in (*reversed(ancestors), project.recipes[name]):
            if recipe.name not in seen:
                seen.add(recipe.name)
                ordered.append(_check_environment(BuildPlan(recipe=recipe, ancestors=_ancestors(project, recipe.name))))
    return ordered
