"""Is a lock still the lock of its recipe? Each lock records what it was made from: the
recipe's requirements, dev package refs, wheel assets, conda environment, [source], the
ancestors' locks and the target (Debian suite, Python, platform). When one of them changes the
lock is stale: `lock --check` fails naming that input, and builds warn."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagebuild.inputs import conda
from imagebuild.inputs.lockfile import ImageLock, lock_path, needs_lock, platform_tag, read_lock
from imagebuild.inputs.target import image_target
from imagebuild.plan import BuildPlan

PARENT = "parent:"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _facts(item: BuildPlan) -> dict[str, Any]:
    """Everything a lock of `item` is made from, by input (the layout `inputs_digest` hashes)."""
    recipe = item.recipe
    if recipe.spec.git_source is not None:
        return {"source": recipe.spec.git_source.model_dump()}
    target = image_target(item)
    facts: dict[str, Any] = {
        "requirements": recipe.requirements.read_text() if recipe.requirements else None,
        "dev_packages": [[p.name, p.url, p.ref] for p in recipe.spec.dev_packages],
        "wheels": sorted(a.sha256 for a in recipe.spec.assets if a.wheel),
        "ancestors": [_file_digest(lock_path(parent)) for parent in item.ancestors],
        "target": [target.python_version, platform_tag(target)],
    }
    if recipe.conda_environment is not None:
        parents = [conda.conda_lock_path(p.directory) for p in item.ancestors if p.conda_environment is not None]
        facts["conda"] = [recipe.conda_environment.read_text(), recipe.spec.conda.prefix, [_file_digest(p) for p in parents]]
    return facts


def inputs_digest(item: BuildPlan) -> str:
    """What a lock of `item` is made from, as one digest; any change makes its lock stale."""
    return _digest(_facts(item))


def input_digests(item: BuildPlan) -> dict[str, str]:
    """The digest of each input on its own, each ancestor's lock apart ('parent:NAME')."""
    facts = _facts(item)
    ancestors = facts.pop("ancestors", [])
    found = {name: _digest(value) for name, value in facts.items()}
    found |= {f"{PARENT}{parent.name}": _digest(digest) for parent, digest in zip(item.ancestors, ancestors, strict=True)}
    return found


def describe_input(item: BuildPlan, name: str) -> str:
    """An input as the user knows it: the file or the recipe field to look at."""
    recipe = item.recipe
    if name.startswith(PARENT):
        parent = name.removeprefix(PARENT)
        return f"the lock of parent '{parent}' ({parent}/{lock_path(recipe).name})"
    described = {
        "requirements": f"the requirements file {recipe.requirements.name if recipe.requirements else '(none now)'}",
        "dev_packages": f"[[dev_packages]] in {recipe.path.name} (a name, url or ref)",
        "wheels": f"the wheel assets in {recipe.path.name} ([[assets]] with wheel = true)",
        "target": "the target (Debian suite of the root image, Python version or platform)",
        "conda": "the conda environment file, [conda].prefix, or a parent's conda lock",
        "source": f"the repository or ref ([source] or dockerfile) in {recipe.path.name}",
    }
    return described.get(name, name)


@dataclass(frozen=True)
class LockState:
    """Whether an image's lock matches its recipe: 'fresh', 'stale', 'missing' or 'none' (nothing
    to lock); for a stale one, the inputs that changed since it was written."""

    name: str
    state: str
    path: Path
    changed: tuple[str, ...] = ()

    def hint(self) -> str:
        return f"run 'imagebuild lock {self.name}' and commit {self.path.name}"

    def explain(self) -> str:
        """'stale: the requirements file requirements.txt changed' and the like."""
        if self.state != "stale":
            return self.state
        if not self.changed:
            return "stale: made from other inputs (the lock predates imagebuild recording them one by one)"
        return f"stale: {'; '.join(self.changed)} changed"


def lock_state(item: BuildPlan, lock: ImageLock | None = None) -> LockState:
    """`lock` is the image's lock when the caller has read it already (each is parsed once a run)."""
    recipe = item.recipe
    path = lock_path(recipe)
    if not needs_lock(recipe):
        return LockState(item.name, "none", path)
    lock = lock or read_lock(recipe)
    if lock is None:
        return LockState(item.name, "missing", path)
    if lock.edited():
        return LockState(item.name, "stale", path, (f"{path.name} itself (its pins or commits were edited by hand)",))
    if lock.inputs == inputs_digest(item):
        return LockState(item.name, "fresh", path)
    now = input_digests(item)
    before = lock.input_digests
    changed = sorted(name for name in before.keys() | now.keys() if before.get(name) != now.get(name)) if before else []
    return LockState(item.name, "stale", path, tuple(describe_input(item, name) for name in changed))
