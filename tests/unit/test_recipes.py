import pytest

from imagebuild.errors import RecipeError
from imagebuild.model.project import load_project
from imagebuild.pipeline import prepare
from imagebuild.plan import plan
from imagebuild.smoketest import smoke_notebooks
from tests.conftest import REPO, offline_fetcher, write_notebook


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
    with pytest.raises(RecipeError, match=r"\[files\]\[0\].dest: must be an absolute path"):
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


def test_locales_are_generated_in_the_os_layer(make_project):
    make_project.recipe("child", 'parent = "base"\n[os]\npackages = ["zip"]\nlocales = ["en_US.UTF-8", "de_CH.UTF-8"]\n')
    project = load_project(make_project.root)
    assert project.recipes["child"].apt_packages == ("locales", "zip")
    (context,) = prepare(offline_fetcher(project), plan(project, ["child"]))[1:]
    dockerfile = context.rendered.dockerfile
    assert "printf '%s UTF-8\\n' en_US.UTF-8 de_CH.UTF-8 > /etc/locale.gen && locale-gen" in dockerfile
    assert dockerfile.index("locale-gen") < dockerfile.index("rm -rf /var/lib/apt/lists/*")


def test_a_locale_that_is_not_utf8_is_refused_with_the_spelling(make_project):
    make_project.recipe("child", 'parent = "base"\n[os]\nlocales = ["en_US"]\n')
    with pytest.raises(RecipeError, match=r"\[os\]\.locales") as caught:
        load_project(make_project.root)
    assert "write it like 'en_US.UTF-8'" in caught.value.render()


NEEDS_ASSET = """
parent = "base"
[smoke]
needs_asset = {{ "{notebook}" = "{asset}" }}
[[assets]]
name = "pseudos"
filename = "pseudos.tar.gz"
sha256 = "{sha}"
optional = {optional}
"""


@pytest.mark.parametrize(
    ("notebook", "asset", "optional", "message"),
    [
        ("smoke/other.ipynb", "pseudos", "true", "'smoke/other.ipynb', which is not one of the smoke notebooks"),
        ("smoke/scf.ipynb", "potentials", "true", "'potentials' is not an optional asset of this recipe"),
        ("smoke/scf.ipynb", "pseudos", "false", "'pseudos' is not an optional asset of this recipe"),
    ],
)
def test_needs_asset_names_a_smoke_notebook_and_an_optional_asset(make_project, notebook, asset, optional, message):
    folder = make_project.recipe(
        "child", NEEDS_ASSET.format(notebook=notebook, asset=asset, sha="a" * 64, optional=optional)
    )
    write_notebook(folder / "smoke" / "scf.ipynb", "print(1)")
    with pytest.raises(RecipeError, match="needs_asset") as caught:
        load_project(make_project.root)
    rendered = caught.value.render()
    assert message in rendered and str(folder / "image.toml") in rendered


def test_a_notebook_is_skipped_only_when_its_optional_asset_is_missing(make_project):
    folder = make_project.recipe(
        "child", NEEDS_ASSET.format(notebook="smoke/scf.ipynb", asset="pseudos", sha="a" * 64, optional="true")
    )
    for name in ("scf", "plain"):
        write_notebook(folder / "smoke" / f"{name}.ipynb", "print(1)")
    item = plan(load_project(make_project.root), ["child"])[-1]
    ran, skipped = smoke_notebooks(item, [], assets_in_image=set())
    assert [(owner, path.name) for owner, path in ran] == [("base", "base.ipynb"), ("child", "plain.ipynb")]
    assert [(s.owner, s.notebook, s.ok) for s in skipped] == [("child", "scf.ipynb", True)]
    assert skipped[0].skipped == "optional asset 'pseudos' is not in the image"
    ran, skipped = smoke_notebooks(item, [], assets_in_image={"pseudos"})
    assert [path.name for _, path in ran] == ["base.ipynb", "plain.ipynb", "scf.ipynb"] and not skipped
