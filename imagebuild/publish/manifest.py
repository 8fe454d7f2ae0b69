"""Step 11, manifest: what a built image holds and how it was made, as JSON and Markdown beside its
build (build/NAME/manifest.json, manifest.md, like jupyter/docker-stacks' build manifests), and
what changed between two images (`imagebuild diff`). Both read the inventory the image wrote of
itself as the last step of its build (support/inventory, in its top layer), so a registry alone
can answer a diff."""

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from packaging.version import InvalidVersion
from packaging.version import Version as PythonVersion

from imagebuild.build.render import ASSET_LABEL, DEV_PACKAGE_LABEL, SOURCE_LABEL
from imagebuild.errors import PublishError
from imagebuild.publish.registry import Registry, RemoteImage

INVENTORY_PATH = "/usr/local/share/imagebuild/inventory.json"
SECTIONS = {"os_packages": "OS packages", "python_packages": "Python packages", "conda_packages": "conda packages"}


def input_provenance(labels: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The assets, dev packages and [source] commit an image's labels name (what `images --json` shows)."""
    return {
        "source": json.loads(labels[SOURCE_LABEL]) if SOURCE_LABEL in labels else {},
        "assets": {k.removeprefix(ASSET_LABEL): v for k, v in sorted(labels.items()) if k.startswith(ASSET_LABEL)},
        "dev_packages": {
            k.removeprefix(DEV_PACKAGE_LABEL): json.loads(v)
            for k, v in sorted(labels.items())
            if k.startswith(DEV_PACKAGE_LABEL)
        },
    }


@dataclass(frozen=True)
class ImageFacts:
    """One image as manifests and diffs see it: its labels, size and inventory."""

    ref: str
    labels: dict[str, str]
    size: int
    inventory: dict[str, dict[str, str]]

    @classmethod
    def of(cls, ref: str, labels: dict[str, str] | None, size: int, inventory: bytes | None) -> "ImageFacts":
        try:
            listed = json.loads(inventory) if inventory else {}
        except ValueError:  # not JSON, or not UTF-8
            listed = None
        if not isinstance(listed, dict) or not all(isinstance(listed.get(section, {}), dict) for section in SECTIONS):
            raise PublishError(
                f"{ref}: its inventory ({INVENTORY_PATH}) is not the JSON object imagebuild writes",
                hint="rebuild the image with this imagebuild",
            )
        return cls(ref, labels or {}, size, {section: listed.get(section, {}) for section in SECTIONS})


def published_facts(registry: Registry, repository: str, name: str, image: RemoteImage) -> ImageFacts:
    """A published image as the registry has it: labels, compressed size and the inventory in
    its top layer (only that layer is read)."""
    inventory = registry.read_file(repository, image, INVENTORY_PATH)
    if inventory is None:
        raise PublishError(
            f"{registry.host}/{repository}:{image.tag} carries no inventory ({INVENTORY_PATH})",
            hint="it was built by an imagebuild without manifests; rebuild and push it",
        )
    return ImageFacts.of(f"{name}:{image.tag}", image.labels, image.size, inventory)


Kind = Literal["added", "removed", "upgraded", "downgraded", "changed"]


@dataclass(frozen=True)
class Change:
    name: str
    before: str | None
    after: str | None
    kind: Kind


def _python_order(before: str, after: str) -> int:
    try:
        older, newer = PythonVersion(before), PythonVersion(after)
    except InvalidVersion:
        return 0
    return (newer > older) - (newer < older)


def _debian_order(before: str, after: str) -> int:
    from debian.debian_support import Version as DebianVersion  # python-debian only when versions are compared

    try:
        older, newer = DebianVersion(before), DebianVersion(after)
    except ValueError:  # not a Debian version: changed, neither up nor down
        return 0
    return (newer > older) - (newer < older)


ORDERS: dict[str, Callable[[str, str], int]] = {
    "os_packages": _debian_order,
    "python_packages": _python_order,
    "conda_packages": lambda before, after: _python_order(before.split("=")[0], after.split("=")[0]),
}


def changes(before: dict[str, str], after: dict[str, str], order: Callable[[str, str], int] | None = None) -> list[Change]:
    """Entries added, removed or changed, by name; with `order`, a change is an up- or downgrade."""
    found = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        if old is None or new is None:
            found.append(Change(name, old, new, "added" if old is None else "removed"))
            continue
        direction = order(old, new) if order else 0
        found.append(Change(name, old, new, "upgraded" if direction > 0 else "downgraded" if direction < 0 else "changed"))
    return found


@dataclass(frozen=True)
class ImageDiff:
    before: str
    after: str
    size_before: int
    size_after: int
    packages: dict[str, list[Change]] = field(default_factory=dict)  # by inventory section
    dev_packages: list[Change] = field(default_factory=list)  # commits
    assets: list[Change] = field(default_factory=list)  # checksums

    @property
    def empty(self) -> bool:
        return not (any(self.packages.values()) or self.dev_packages or self.assets)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        lines = [f"## {self.before} → {self.after}", ""]
        change = (self.size_after - self.size_before) / 1e6
        lines.append(f"Size (compressed layers, as pulled): {_gb(self.size_before)} → {_gb(self.size_after)} ({change:+.1f} MB)")
        groups = [(SECTIONS[s], c) for s, c in self.packages.items()] + [
            ("Dev package commits", self.dev_packages),
            ("Asset checksums", self.assets),
        ]
        for title, found in groups:
            if found:
                lines += ["", f"### {title}", "", "| name | change | before | after |", "| --- | --- | --- | --- |"]
                lines += [f"| {c.name} | {c.kind} | {c.before or '-'} | {c.after or '-'} |" for c in found]
        if self.empty:
            lines += ["", "No package, dev package or asset changed."]
        return "\n".join(lines) + "\n"


def _commits(labels: dict[str, str]) -> dict[str, str]:
    """Dev package commits, and the [source] repository's as '[source]'."""
    provenance = input_provenance(labels)
    source = {"[source]": provenance["source"]["commit"]} if provenance["source"] else {}
    return {**source, **{name: entry["commit"] for name, entry in provenance["dev_packages"].items()}}


def diff(before: ImageFacts, after: ImageFacts) -> ImageDiff:
    return ImageDiff(
        before=before.ref,
        after=after.ref,
        size_before=before.size,
        size_after=after.size,
        packages={s: changes(before.inventory[s], after.inventory[s], ORDERS[s]) for s in SECTIONS},
        dev_packages=changes(_commits(before.labels), _commits(after.labels)),
        assets=changes(input_provenance(before.labels)["assets"], input_provenance(after.labels)["assets"]),
    )


def _gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB"


def manifest(
    facts: ImageFacts, *, name: str, content_hash: str, mirror: str | None, smoke: list[dict[str, Any]], published: dict[str, Any] | None
) -> dict[str, Any]:
    """Everything a hub admin asks of a build, in one document."""
    provenance = input_provenance(facts.labels)
    return {
        "image": name,
        "ref": facts.ref,
        "content_hash": content_hash,
        "parent": facts.labels.get("io.imagebuild.base"),
        "created": facts.labels.get("org.opencontainers.image.created"),
        "revision": facts.labels.get("org.opencontainers.image.revision"),
        "size": facts.size,
        "mirror": mirror,
        "registry": published.get("registry") if published else None,
        "digest": published.get("digest") if published else None,
        "tags": [t["tag"] for t in published.get("tags", []) if t.get("action") != "held"] if published else [],
        "source": provenance["source"] or None,
        "dev_packages": provenance["dev_packages"],
        "assets": provenance["assets"],
        "smoke": smoke,
        **facts.inventory,
    }


def markdown(document: dict[str, Any]) -> str:
    rows = [
        ("content hash", document["content_hash"]),
        ("parent", document["parent"] or "-"),
        ("created", document["created"] or "-"),
        ("size (uncompressed)", _gb(document["size"])),
        ("mirror", document["mirror"] or "none (upstream indexes)"),
        ("published", f"{document['registry']} {document['digest']}" if document["digest"] else "not pushed"),
        ("tags", ", ".join(document["tags"]) or "-"),
    ]
    if document.get("source"):
        rows.append(("source", f"{document['source']['url']} {document['source']['ref']} at {document['source']['commit']}"))
    lines = [f"# {document['image']}: {document['ref']}", "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    if document["smoke"]:
        lines += ["", "## Smoke notebooks", "", "| notebook | result | seconds |", "| --- | --- | ---: |"]
        for run in document["smoke"]:
            result = f"skipped: {run['skipped']}" if run.get("skipped") else ("passed" if run["ok"] else "failed")
            lines.append(f"| {run['owner']}/{run['notebook']} | {result} | {run['seconds']} |")
    for key, title in (("dev_packages", "Dev packages"), ("assets", "Assets")):
        if document[key]:
            lines += ["", f"## {title}", "", "| name | pinned |", "| --- | --- |"]
            lines += [f"| {name} | {json.dumps(value) if isinstance(value, dict) else value} |" for name, value in document[key].items()]
    for section, title in SECTIONS.items():
        if document[section]:
            lines += ["", f"## {title}", "", "| name | version |", "| --- | --- |"]
            lines += [f"| {name} | {version} |" for name, version in document[section].items()]
    return "\n".join(lines) + "\n"


def write(document: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(document, indent=2) + "\n")
    (folder / "manifest.md").write_text(markdown(document))
    return folder / "manifest.json"
