"""The package's architecture, checked: which layer each module is in, which way imports go,
which few modules may import the libraries that shape everything around them, and how long a
module may grow. The tables below are the description; the tests only hold the tree to them.

Every import counts, function-local ones included (imports deferred for start-up speed are still
dependencies). A failure lists every offender, with the import that breaks the rule.
"""

import ast
import fnmatch
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "imagebuild"
NOT_PYTHON_OF_THE_PACKAGE = ("templates/*", "support/*")  # files copied into images and hubs, not imported

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # (layer, module patterns), top first: a module imports its own layer and the layers below it only.
    ("command line", ("cli", "cli.*", "__main__")),
    ("orchestrators", ("pipeline", "reuse", "smoketest", "provenance", "nightly", "schedule", "handoff", "ci", "runs", "hub.lifecycle")),
    ("steps", ("inputs", "inputs.*", "build", "build.*", "mirrors", "mirrors.*", "publish", "publish.*", "hub", "hub.*")),
    ("run settings", ("plan", "config", "config.*", "ca")),
    ("model of the files users write", ("model", "model.*")),
    ("foundation", ("", "errors", "system")),
]
"""Patterns name modules relative to imagebuild ("" is the package itself); the first match places a module."""

ONLY_IMPORTERS: dict[str, tuple[str, ...]] = {
    # third-party library -> the only modules that may import it
    "typer": ("cli.*",),
    "rich": ("cli.*",),
    "docker": ("build.engine",),
    "subprocess": ("system",),  # every external command through system.run (a timeout, failures as errors)
}

CONFINED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # name -> (the modules confined, what else of imagebuild they may import)
    "the files users write": (("model", "model.*"), ("errors",)),
    "mirror rewriting": (("mirrors.rules", "mirrors.rewrite", "mirrors.rewrite.*"), ("model", "model.*", "errors")),
}

MAX_LINES = 320
"""About 300: a module longer than that holds more than one concern."""

KNOWN_OFFENDERS: dict[str, dict[str, str]] = {
    # rule -> {offence: why it is tolerated for now}. An entry that no longer offends fails its
    # test, so this table only shrinks. Offences are "module -> import" or a module's name.
    "layers": {},
    "rich": {},
    "subprocess": {},
    "length": {},
}


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {
    _name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if not any(fnmatch.fnmatch(path.relative_to(PACKAGE).as_posix(), pattern) for pattern in NOT_PYTHON_OF_THE_PACKAGE)
}


def _matches(module: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(module, pattern) for pattern in patterns)


def layer_of(module: str) -> int | None:
    return next((index for index, (_, patterns) in enumerate(LAYERS) if _matches(module, patterns)), None)


@functools.cache
def imports(module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in `module`, anywhere in it: imagebuild's as
    names relative to the package (a `from imagebuild.x import y` names x.y when y is a module),
    other libraries' by their top-level name prefixed with ':'."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, _classify(alias.name)) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package upwards
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                origin = ".".join(["imagebuild", *[part for part in base if part], *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            target = _classify(origin)
            if not target.startswith(":"):
                for alias in node.names:
                    submodule = f"{target}.{alias.name}".lstrip(".")
                    found.append((node.lineno, submodule if submodule in MODULES else target))
            else:
                found.append((node.lineno, target))
    return list(dict.fromkeys(found))


def _classify(name: str) -> str:
    if name == "imagebuild" or name.startswith("imagebuild."):
        return name.removeprefix("imagebuild").lstrip(".")
    return ":" + name.split(".")[0]


def _check(offences: dict[str, str], rule: str) -> None:
    """Fail on every offence against `rule` not in KNOWN_OFFENDERS, and on every known offender
    that no longer offends."""
    known = KNOWN_OFFENDERS.get(rule, {})
    new = [message for key, message in offences.items() if key not in known]
    mended = [key for key in known if key not in offences]
    assert not new, "\n".join(["", *new])
    assert not mended, "no longer offending, remove from KNOWN_OFFENDERS:\n" + "\n".join(mended)


def _where(module: str, line: int | None = None) -> str:
    return f"imagebuild/{MODULES[module].relative_to(PACKAGE)}" + (f":{line}" if line else "")


def test_every_module_has_a_layer():
    unplaced = [_where(module) for module in MODULES if layer_of(module) is None]
    assert not unplaced, "place these modules in a layer of LAYERS:\n" + "\n".join(unplaced)


def test_imports_go_down_the_layers_only():
    offences = {}
    for module in MODULES:
        own = layer_of(module)
        for line, target in imports(module):
            theirs = layer_of(target) if target in MODULES else None
            if own is not None and theirs is not None and theirs < own:
                offences[f"{module} -> {target}"] = (
                    f"{_where(module, line)}: {LAYERS[own][0]} module {module or 'imagebuild'}"
                    f" imports {target} of the {LAYERS[theirs][0]} layer above it"
                )
    _check(offences, "layers")


@pytest.mark.parametrize("library", sorted(ONLY_IMPORTERS))
def test_only_their_modules_import_these_libraries(library):
    allowed = ONLY_IMPORTERS[library]
    offences = {
        module: f"{_where(module, line)}: imports {library} (only {', '.join(allowed)} may)"
        for module in MODULES
        if not _matches(module, allowed)
        for line, target in imports(module)
        if target == f":{library}"
    }
    _check(offences, library)


@pytest.mark.parametrize("group", sorted(CONFINED))
def test_confined_modules_import_only_what_they_are_allowed(group):
    members, allowed = CONFINED[group]
    offences = {
        f"{module} -> {target}": f"{_where(module, line)}: {group} imports {target}"
        for module in MODULES
        if _matches(module, members)
        for line, target in imports(module)
        if not target.startswith(":") and not _matches(target, members + allowed)
    }
    _check(offences, group)


def test_no_module_is_much_longer_than_300_lines():
    offences = {
        module: f"{_where(module)}: {count} lines (split it: more than {MAX_LINES})"
        for module, path in MODULES.items()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    _check(offences, "length")


def test_the_rules_see_what_they_check():
    """The checker itself: function-local and `from imagebuild import x` imports are found."""
    found = {target for _, target in imports("build.engine")}
    assert ":docker" in found and "build.context" in found
    cli = {target for _, target in imports("cli.main")}
    assert "build.engine" in cli  # `from imagebuild.build import engine as engine_module`
    assert layer_of("cli.main") == 0 and layer_of("errors") == len(LAYERS) - 1
