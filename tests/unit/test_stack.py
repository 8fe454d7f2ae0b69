"""dockerfile recipes without an engine: the Dockerfile is checked before anything is built (one
line naming the file and the line), FROM build arguments are resolved with the recipe's args, the
file is cut after its target stage, the content hash covers exactly what COPY takes, and a child
on such a parent installs into the environment it names, as that environment's owner."""

import textwrap
from pathlib import Path

import pytest

from imagebuild.build.render import render
from imagebuild.build.stack import check_stack, copied_by
from imagebuild.errors import RecipeError
from imagebuild.inputs.target import image_target
from imagebuild.model.external_schema import DockerfileSpec
from imagebuild.model.project import load_project
from imagebuild.pipeline import prepare, root_image
from imagebuild.plan import plan
from tests.conftest import offline_fetcher

WHERE = Path("/site/Dockerfile")
RECIPE = Path("/site/image.toml")


def _check(text: str, **spec: object):
    return check_stack(textwrap.dedent(text), DockerfileSpec.model_validate(spec), where=WHERE, recipe=RECIPE)


@pytest.mark.parametrize(
    ("text", "spec", "line", "words"),
    [
        ("FROM debian:bookworm\nRUN true\napt-get install -y git\n", {}, 3, "unknown instruction 'APT-GET'"),
        ("RUN true\nFROM debian:bookworm\n", {}, 1, "RUN before the first FROM"),
        ('FROM debian:bookworm\nRUN ["pip", "install", "x"]\n', {}, 2, "exec-form RUN"),
        ("FROM debian:bookworm\nRUN <<EOF\necho hi\nEOF\n", {}, 2, "heredoc needs BuildKit"),
        ("ARG BASE\nFROM ${BASE}\n", {}, 2, "the build argument BASE has no value"),
        ("FROM debian:${SUITE}\n", {"args": {"SUITE": "bookworm"}}, 1, "the build argument SUITE has no value"),
        ("FROM debian:bookworm\nCOPY --from=biuld /x /x\n", {}, 2, "no stage named 'biuld'"),
        ("FROM debian:bookworm\nCOPY --from=1 /x /x\n", {}, 2, "no earlier stage 1"),
        ("FROM\n", {}, 1, "FROM without an image"),
    ],
)
def test_a_dockerfile_that_cannot_be_built_is_one_line_naming_the_file_and_line(text, spec, line, words):
    with pytest.raises(RecipeError) as caught:
        _check(text, **spec)
    assert caught.value.path == WHERE
    assert caught.value.message.startswith(f"line {line}: ") and words in caught.value.message
    assert "\n" not in caught.value.message and caught.value.hint


def test_a_target_that_is_no_stage_names_the_stages():
    with pytest.raises(RecipeError, match="no stage named 'final'") as caught:
        _check("FROM debian:bookworm AS build\nFROM build AS runtime\n", target="final")
    assert caught.value.path == RECIPE and "build, runtime" in str(caught.value.hint)


def test_a_dockerfile_without_from_is_refused():
    with pytest.raises(RecipeError, match="no FROM"):
        _check("# only a comment\nARG X=1\n")


def test_from_arguments_resolve_with_the_recipe_args_over_the_defaults():
    stack = _check(
        """\
        ARG SUITE=bullseye
        ARG REGISTRY
        FROM debian:${SUITE} AS build
        FROM ${REGISTRY:-docker.io}/library/debian:$SUITE
        RUN echo $SUITE
        """,
        args={"SUITE": "bookworm"},
    )
    assert stack.dockerfile.splitlines()[2:5] == [
        "FROM debian:bookworm AS build",
        "FROM docker.io/library/debian:bookworm",
        "RUN echo $SUITE",  # a RUN's variables are the build's, from its build arguments
    ]


def test_an_argument_declared_only_by_the_recipe_does_not_reach_from():
    """As docker: a FROM sees only the ARGs declared before the first FROM."""
    with pytest.raises(RecipeError, match="BASE has no value"):
        _check("FROM ${BASE}\n", args={"BASE": "debian:bookworm"})


def test_the_file_is_cut_after_its_target_stage():
    stack = _check(
        "FROM debian:bookworm AS build\nRUN make\nFROM build AS runtime\nRUN true\nFROM runtime AS debug\nRUN exit 1\n",
        target="Runtime",
    )
    assert stack.dockerfile.endswith("FROM build AS runtime\nRUN true\n")


def test_copy_sources_name_exactly_the_context_files_taken():
    stack = _check(
        """\
        FROM debian:bookworm AS build
        COPY --chown=1000:100 requirements.txt src/ /app/
        ADD https://example.org/tool.tar.gz /opt/
        COPY ["conf/*.ini", "/etc/app/"]
        FROM debian:bookworm
        COPY --from=build /app /app
        """
    )
    assert stack.copies == ("requirements.txt", "src/", "conf/*.ini")
    taken = [name for name in ("requirements.txt", "src/a.py", "src/pkg/b.py", "conf/x.ini", "conf/sub/y.ini", "notes.md")
             if copied_by(name, stack.copies)]  # fmt: skip
    assert taken == ["requirements.txt", "src/a.py", "src/pkg/b.py", "conf/x.ini"]
    assert _check("FROM debian:bookworm\nCOPY . /app\n").copies == (".",)
    assert _check("FROM debian:bookworm\nARG F\nCOPY $F /app\n").copies is None  # a variable: the whole context


STACK_DOCKERFILE = """\
ARG SUITE=bullseye
FROM debian:${SUITE}
RUN python3 -m venv /opt/venv
COPY app/ /opt/app/
"""


@pytest.fixture
def stack_project(make_project):
    make_project.recipe(
        "site",
        'dockerfile = { context = "ctx", path = "ctx/Dockerfile", args = { SUITE = "bookworm" }, python = "3.11.2", glibc = "2.36" }\n',
        {
            "ctx/Dockerfile": STACK_DOCKERFILE,
            "ctx/app/main.py": "print('app')\n",
            "ctx/app/cache.pyc": "ignored\n",
            "ctx/.dockerignore": "**/*.pyc\n",
            "ctx/notes.md": "not copied\n",
        },
    )
    make_project.recipe(
        "child",
        """\
        parent = "site"
        [os]
        packages = ["git"]
        [python]
        requirements = "requirements.txt"
        environment = "/opt/conda"
        """,
        {"requirements.txt": "packaging==24.2\n"},
    )
    return make_project


def _prepared(root: Path) -> dict:
    project = load_project(root)
    return {context.rendered.plan.name: context for context in prepare(offline_fetcher(project), plan(project, ["site"]))}


def test_the_content_hash_covers_copied_files_and_args_only(stack_project):
    folder = stack_project.root / "images" / "site"
    first = _prepared(stack_project.root)["site"]
    assert sorted(item.arcname for item in first.rendered.files) == ["app/main.py", "imagebuild/with-build-env"]
    assert first.rendered.roots == ("debian:bookworm",) and root_image(first) == "debian:bookworm"
    assert "FROM debian:bookworm\n" in first.rendered.dockerfile
    (folder / "ctx" / "notes.md").write_text("changed, and not copied\n")
    (folder / "ctx" / "app" / "cache.pyc").write_text("changed, and left out by .dockerignore\n")
    assert _prepared(stack_project.root)["site"].content_hash == first.content_hash
    (folder / "ctx" / "app" / "main.py").write_text("print('changed')\n")
    changed = _prepared(stack_project.root)["site"].content_hash
    assert changed != first.content_hash
    dockerfile = folder / "ctx" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "ARG EXTRA\n")
    declared = _prepared(stack_project.root)["site"].content_hash
    toml = folder / "image.toml"
    toml.write_text(toml.read_text().replace("SUITE = ", 'EXTRA = "1", SUITE = '))
    assert _prepared(stack_project.root)["site"].content_hash not in (changed, declared)


def test_a_child_installs_into_the_named_environment_as_its_owner(stack_project):
    project = load_project(stack_project.root)
    child = plan(project, ["child"])[-1]
    assert str(image_target(child)) == "CPython 3.11 on manylinux_2_36_x86_64"
    dockerfile = render(child, "test/site:sha-0").dockerfile
    assert "--target /opt/imagebuild/installer uv==" in dockerfile and "/opt/conda/bin/python -m pip" in dockerfile
    assert "setpriv --reuid=$(stat -c %u /opt/conda) --regid=$(stat -c %g /opt/conda) --clear-groups" in dockerfile
    assert "/opt/imagebuild/installer/bin/uv pip install --compile-bytecode --python /opt/conda/bin/python" in dockerfile
    assert "fix-permissions" not in dockerfile  # the parent's image may not have it; the owner installs
    assert "/opt/conda/bin/python /usr/local/libexec/imagebuild/inventory /opt/conda" in dockerfile


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('dockerfile = { path = "Dockerfile" }\n[os]\npackages = ["git"]\n', "remove os"),
        ('dockerfile = { python = "3.11.2" }\n', "give both 'python' and 'glibc'"),
        ('dockerfile = { path = "../Dockerfile" }\n', "without '..'"),
        ('dockerfile = { path = "Missing" }\n', "dockerfile.path: file 'Missing' not found"),
        ('dockerfile = { context = "nowhere" }\n', "dockerfile.context: folder 'nowhere' not found"),
        ('root = "debian:bookworm"\ndockerfile = {}\n', "remove root"),
    ],
)
def test_a_bad_dockerfile_recipe_is_refused_on_load(make_project, toml, words):
    make_project.recipe("site", toml, {"Dockerfile": "FROM debian:bookworm\n"})
    with pytest.raises(RecipeError, match=words.replace("(", r"\(").replace(".", r"\.")):
        load_project(make_project.root)


def test_python_environment_belongs_to_children_of_dockerfile_recipes(make_project):
    make_project.recipe("child", 'parent = "base"\n[python]\nenvironment = "/opt/conda"\n')
    with pytest.raises(RecipeError, match=r"\[python\]\.environment"):
        plan(load_project(make_project.root), ["child"])


def test_a_child_of_a_stack_without_python_version_cannot_lock(make_project):
    make_project.recipe("site", "dockerfile = {}\n", {"Dockerfile": "FROM debian:bookworm\n"})
    make_project.recipe("child", 'parent = "site"\n')
    with pytest.raises(RecipeError, match=r"dockerfile\.python and dockerfile\.glibc"):
        image_target(plan(load_project(make_project.root), ["child"])[-1])


SHARED = Path(__file__).resolve().parents[3] / "shared" / "dockerfiles"
OURS = Path(__file__).resolve().parents[1] / "fixtures" / "dockerfiles"
NEEDS_ARGS = {"aiidalab-docker-stack/base.Dockerfile": {"BASE": "quay.io/jupyter/docker-stacks-foundation"}}
"""Built upstream with build arguments (docker-bake.hcl): without them the check names the ARG."""


@pytest.mark.parametrize(
    "path",
    sorted(SHARED.glob("*/*.Dockerfile")) + sorted(OURS.glob("*.Dockerfile")),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_real_world_dockerfiles_pass_the_checks_with_their_build_arguments(path: Path) -> None:
    text, key = path.read_text(), f"{path.parent.name}/{path.name}"
    if key in NEEDS_ARGS:
        with pytest.raises(RecipeError, match=f"the build argument {next(iter(NEEDS_ARGS[key]))} has no value"):
            check_stack(text, DockerfileSpec(), where=path, recipe=RECIPE)
    stack = check_stack(text, DockerfileSpec(args=NEEDS_ARGS.get(key, {})), where=path, recipe=RECIPE)
    assert "${" not in next(line for line in stack.dockerfile.splitlines() if line.startswith("FROM"))


def test_an_argument_the_dockerfile_never_declares_is_refused_with_the_likely_name():
    with pytest.raises(RecipeError, match=r"dockerfile.args.PYTHON_VERSON: .* declares no ARG PYTHON_VERSON") as caught:
        _check("ARG PYTHON_VERSION=3.11\nFROM debian:bookworm\n", args={"PYTHON_VERSON": "3.12"})
    assert caught.value.hint == "did you mean 'PYTHON_VERSION'?"
    assert _check("FROM debian:bookworm\nARG LATE\nRUN echo $LATE\n", args={"LATE": "1"}).dockerfile  # a stage's ARG counts
