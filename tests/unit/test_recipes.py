import pytest

from imagebuild.errors import RecipeError
from imagebuild.plan import load_project, plan
from tests.conftest import REPO


def test_bundled_recipes_load_and_inherit():
    project = load_project(REPO)
    assert set(project.recipes) >= {"base", "aiidalab", "pyiron"}
    order = [item.name for item in plan(project, ["aiidalab", "pyiron"])]
    assert order == ["base", "aiidalab", "pyiron"]
    aiidalab = plan(project, ["aiidalab"])[-1]
    assert [recipe.name for recipe in aiidalab.ancestors] == ["base"]
    assert aiidalab.root_image == "debian:bookworm"


def test_all_plans_every_image_parents_first():
    order = [item.name for item in plan(load_project(REPO), [], everything=True)]
    assert order.index("base") < order.index("aiidalab")
    assert order.index("base") < order.index("pyiron")


def test_unknown_key_names_file_field_and_suggestion(make_project):
    folder = make_project.recipe("child", 'parent = "base"\n[pythn]\nrequirements = "requirements.txt"\n')
    with pytest.raises(RecipeError) as caught:
        load_project(make_project.root)
    message = caught.value.render()
    assert str(folder / "image.toml") in message
    assert "pythn: unknown key" in message
    assert "did you mean 'python'?" in message


def test_unknown_nested_key_lists_known_keys(make_project):
    make_project.recipe("child", 'parent = "base"\n[smoke]\nnotebook = ["x.ipynb"]\n')
    with pytest.raises(RecipeError, match=r"\[smoke\]\.notebook: unknown key") as caught:
        load_project(make_project.root)
    assert "did you mean 'notebooks'?" in caught.value.render()


def test_missing_requirements_file(make_project):
    folder = make_project.recipe("child", 'parent = "base"\n[python]\nrequirements = "reqs.txt"\n')
    with pytest.raises(RecipeError) as caught:
        load_project(make_project.root)
    assert caught.value.render().startswith(
        f"{folder / 'image.toml'}: [python].requirements: file 'reqs.txt' not found"
    )


def test_wrong_type_names_field(make_project):
    make_project.recipe("child", 'parent = "base"\n[os]\npackages = "curl"\n')
    with pytest.raises(RecipeError, match=r"\[os\]\.packages: Input should be a valid list"):
        load_project(make_project.root)


def test_bad_file_mode_and_relative_dest(make_project):
    make_project.recipe(
        "child", 'parent = "base"\n[[files]]\nsrc = "a"\ndest = "etc/a"\n', files={"a": "x"}
    )
    with pytest.raises(RecipeError, match=r"\[files\]\[0\]\.dest: Value error, must be an absolute path"):
        load_project(make_project.root)


def test_parent_and_root_are_exclusive(make_project):
    make_project.recipe("child", 'parent = "base"\nroot = "debian:bookworm"\n')
    with pytest.raises(RecipeError, match="set exactly one of 'parent'"):
        load_project(make_project.root)


def test_invalid_toml_is_reported_with_file(make_project):
    folder = make_project.recipe("child", 'parent = "base\n')
    with pytest.raises(RecipeError, match="not valid TOML") as caught:
        load_project(make_project.root)
    assert str(folder / "image.toml") in caught.value.render()


def test_missing_parent_names_chain(make_project):
    make_project.recipe("child", 'parent = "middle"\n')
    make_project.recipe("middle", 'parent = "nowhere"\n')
    project = load_project(make_project.root)
    with pytest.raises(RecipeError, match="no recipe named 'nowhere' \\(chain child -> middle -> nowhere\\)"):
        plan(project, ["child"])


def test_cyclic_parents_name_the_cycle(make_project):
    make_project.recipe("a", 'parent = "b"\n')
    make_project.recipe("b", 'parent = "a"\n')
    with pytest.raises(RecipeError, match="cycle a -> b -> a"):
        plan(load_project(make_project.root), ["a"])


def test_unknown_image_lists_known(make_project):
    with pytest.raises(RecipeError, match="no image named 'nope'") as caught:
        plan(load_project(make_project.root), ["nope"])
    assert "known images: base" in caught.value.render()


def test_apt_file_comments_and_blank_lines_are_ignored(make_project):
    make_project.recipe(
        "child",
        'parent = "base"\n[os]\npackages = ["zip"]\npackages_file = "apt.txt"\n',
        files={"apt.txt": "# tools\ncurl  # for downloads\n\nunzip\n"},
    )
    recipe = load_project(make_project.root).recipes["child"]
    assert recipe.apt_packages == ("curl", "unzip", "zip")
