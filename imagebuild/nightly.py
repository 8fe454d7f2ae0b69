"""`imagebuild nightly`: the job a scheduler runs every night, one image at a time, parents first.

    refresh the lock (newest pins unless [nightly] upgrade = false; dev package refs to their
    current commits) -> prepare
    -> already published under its content tag? then nothing is built; only edge (and latest,
       with --promote) follow it, in the registry alone
    -> else build and smoke-test those contexts (pipeline.build_prepared), push date, content
       and version tags plus edge (latest too with --promote), and diff it against the previous edge
    -> retention of old images -> report (build/nightly/report.{json,md})

An image that fails is reported and its children are skipped; unrelated images go on. Nothing
is pushed that did not pass its smoke notebooks (the pipeline's rule), and a CI runner that
starts with an empty engine builds nothing when nothing changed: the registry answers.
"""

import datetime
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imagebuild import pipeline
from imagebuild.build.builders import BuilderOnce
from imagebuild.build.context import HASH_LABEL
from imagebuild.build.engine import Engine
from imagebuild.config import RunConfig
from imagebuild.errors import ImagebuildError, PublishError, RecipeError
from imagebuild.handoff import Handoff, pull_published
from imagebuild.inputs.fetch import Fetcher
from imagebuild.inputs.lock import lock_image
from imagebuild.inputs.lockstate import lock_state
from imagebuild.model.hub import HubFolder
from imagebuild.model.project import Project
from imagebuild.plan import BuildPlan, plan
from imagebuild.publish.manifest import diff, published_facts
from imagebuild.publish.push import registry_repository
from imagebuild.publish.registry import Registry, RemoteImage
from imagebuild.publish.retention import Deletion, RetentionPolicy, apply
from imagebuild.runs import Publishing, Reporter
from imagebuild.schedule import side_by_side

REPORT_FILES = ("report.json", "report.md")


@dataclass(frozen=True)
class NightlyOptions:
    push: bool
    promote: bool
    refresh_locks: bool
    upgrade: bool  # the refresh takes the newest pins, not only new dev commits
    prune: bool
    policy: RetentionPolicy
    hubs: tuple[Path, ...]


@dataclass
class ImageNight:
    """What the night did to one image."""

    name: str
    action: str = "unchanged"  # unchanged, built, reused (present, pushed now), failed, skipped
    content_hash: str = ""
    seconds: float = 0.0
    pins_changed: dict[str, list[str | None]] = field(default_factory=dict)  # by the lock refresh
    dev_commits: dict[str, list[str | None]] = field(default_factory=dict)  # moved by the lock refresh
    smoke: str = ""
    pushed: list[str] = field(default_factory=list)  # tags written to the registry tonight
    digest: str = ""
    diff: dict[str, Any] | None = None  # against the previous edge
    diff_markdown: str = ""
    error: str = ""
    exit_code: int = 0

    @property
    def content_tag(self) -> str:
        return f"sha-{self.content_hash[:12]}" if self.content_hash else "-"

    def row(self) -> list[str]:
        """image, action, content tag, seconds, smoke, pushed: one line of the table and the report."""
        return [self.name, self.action, self.content_tag, f"{self.seconds:.1f}", self.smoke or "-", ", ".join(self.pushed) or "-"]


@dataclass
class NightlyReport:
    started: str
    seconds: float
    registry: str
    pushed: bool
    images: list[ImageNight]
    deleted: list[Deletion] = field(default_factory=list)
    retention_error: str = ""

    @property
    def exit_code(self) -> int:
        """0 when every image passed or was unchanged; else the exit code of the first failure."""
        codes = [night.exit_code for night in self.images if night.action == "failed"]
        codes += [PublishError.exit_code] if self.retention_error else []
        return codes[0] if codes else 0

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for night in self.images:
            counts[night.action] = counts.get(night.action, 0) + 1
        parts = [f"{count} {action}" for action, count in counts.items()]
        tags = sum(len(night.pushed) for night in self.images)
        pushed = f"{tags} tag(s) pushed" if tags else "nothing pushed"
        return f"{', '.join(parts)}; {pushed}; {len(self.deleted)} old image(s) deleted; {self.seconds:.1f} s"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "summary": self.summary(), "exit_code": self.exit_code}

    def markdown(self) -> str:
        lines = [f"# Nightly of {self.started}", "", self.summary(), ""]
        lines += ["| image | action | content tag | seconds | smoke | pushed |", "| --- | --- | --- | ---: | --- | --- |"]
        lines += ["| " + " | ".join(night.row()) + " |" for night in self.images]
        for night in self.images:
            if night.error:
                lines += ["", f"## {night.name}: {night.action}", "", "```", night.error, "```"]
        for night in self.images:
            if night.pins_changed or night.dev_commits:
                lines += ["", f"## {night.name}: the lock refresh moved", "", "| name | before | after |", "| --- | --- | --- |"]
                moved = {**night.pins_changed, **{f"{name} (commit)": pair for name, pair in night.dev_commits.items()}}
                lines += [f"| {name} | {before or '-'} | {after or '-'} |" for name, (before, after) in moved.items()]
            if night.diff_markdown:
                lines += ["", f"## {night.name}: against the previous edge", "", night.diff_markdown.replace("## ", "### ", 1)]
        if self.deleted or self.retention_error:
            lines += ["", "## Retention", ""]
            lines += [f"Failed: {self.retention_error}", ""] if self.retention_error else []
            lines += [f"- deleted {d.repository}@{d.digest[:19]} ({d.created[:10]}): {', '.join(d.tags)}" for d in self.deleted]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / REPORT_FILES[0]).write_text(json.dumps(self.to_json(), indent=2) + "\n")
        (folder / REPORT_FILES[1]).write_text(self.markdown())
        return folder / REPORT_FILES[1]


def hub_digests(hubs: tuple[Path, ...]) -> set[str]:
    """The digests the hubs offer: retention never deletes them."""
    digests = set()
    for folder in hubs:
        if not folder.is_dir():
            raise RecipeError(
                "hub folder not found", path=folder, hint="name a folder written by 'imagebuild hub init' in [nightly] hubs or --hub"
            )
        digests |= {image.digest for image in HubFolder(folder).selection.images}
    return digests


@dataclass
class _Night:
    config: RunConfig
    engine: Engine
    registry: Registry | None
    options: NightlyOptions
    fetcher: Fetcher
    reporter: Reporter
    builder: BuilderOnce
    """One for the night: the CLIs are asked once, and only when something is built."""
    nights: dict[str, ImageNight] = field(default_factory=dict)

    @property
    def project(self) -> Project:
        return self.config.project

    def run(self, item: BuildPlan) -> ImageNight:
        night = ImageNight(item.name)
        self.nights[item.name] = night
        started = time.monotonic()
        broken = [parent.name for parent in item.ancestors if self.nights[parent.name].action in ("failed", "skipped")]
        if broken:
            night.action, night.error = "skipped", f"its parent {broken[0]} failed"
        else:
            try:
                self._image(item, night)
            except ImagebuildError as error:
                night.action, night.error, night.exit_code = "failed", error.render(), error.exit_code
                self.reporter.say(f"{item.name} failed ({error.message.splitlines()[0]}); going on with the others")
        night.seconds = round(time.monotonic() - started, 2)
        return night

    def _image(self, item: BuildPlan, night: ImageNight) -> None:
        if self.options.refresh_locks and lock_state(item).state != "none":
            self._refresh_lock(item, night)
        contexts = pipeline.prepare(self.fetcher, plan(self.project, [item.name]))
        context = contexts[-1]
        night.content_hash = context.content_hash
        repository = registry_repository(self.project, item.name)
        previous = None
        if self.registry is not None:
            published = self.registry.image(repository, f"sha-{context.short_hash}")
            if published is not None and published.labels.get(HASH_LABEL) == context.content_hash:
                self.reporter.say(f"{item.name}: sha-{context.short_hash} is published already; nothing to build")
                night.smoke = "passed before"
                night.digest, night.pushed = published.digest, self._follow(repository, published)
                return
            previous = self.registry.image(repository, "edge")
            pull_published(self.config, self.engine, contexts[:-1], Handoff(self.registry), self.reporter.say)
        publishing = Publishing(self.config.registry if self.registry is not None else None, "edge", {item.name})
        outcome = pipeline.build_prepared(self.config, contexts, builder=self.builder, reporter=self.reporter, publishing=publishing)[-1]
        night.smoke = outcome.smoke.summary() if outcome.smoke else "passed before"
        if outcome.published is None:
            night.action = "built" if outcome.action == "built" else "unchanged"
            return
        night.action = outcome.action
        night.digest = outcome.published.digest
        night.pushed = [tag.tag for tag in outcome.published.tags if tag.action == "pushed"]
        current = self.registry.image(repository, f"sha-{context.short_hash}")  # type: ignore[union-attr]
        assert current is not None  # publish() read every tag back
        night.pushed += self._follow(repository, current)
        if previous is not None and previous.digest != current.digest:
            self._diff(night, repository, previous, current)

    def _refresh_lock(self, item: BuildPlan, night: ImageNight) -> None:
        outcome = lock_image(item, self.fetcher, upgrade=self.options.upgrade)
        night.pins_changed = outcome.changed_pins
        night.dev_commits = {
            package["name"]: [package["previous_commit"], package["commit"]]  # type: ignore[misc]
            for package in outcome.dev_packages
            if package["previous_commit"] != package["commit"]
        }

    def _follow(self, repository: str, image: RemoteImage) -> list[str]:
        """Point the moving tags at `image` where they name something else; the tags moved."""
        assert self.registry is not None
        moving = ["edge", "latest"] if self.options.promote else ["edge"]
        moved = []
        for tag in moving:
            current = self.registry.image(repository, tag)
            if current is None or current.digest != image.digest:
                self.registry.retag(repository, image.digest, tag)
                self.reporter.say(f"{self.registry.host}/{repository}:{tag} -> {image.digest[:19]}")
                moved.append(tag)
        return moved

    def _diff(self, night: ImageNight, repository: str, previous: RemoteImage, current: RemoteImage) -> None:
        assert self.registry is not None
        try:
            before = published_facts(self.registry, repository, night.name, previous)
            after = published_facts(self.registry, repository, night.name, current)
        except PublishError as error:
            night.diff_markdown = f"No diff against the previous edge: {error.message}\n"
            return
        changed = diff(before, after)
        night.diff, night.diff_markdown = changed.to_json(), changed.markdown()

    def retention(self, report: NightlyReport) -> None:
        assert self.registry is not None
        protected = hub_digests(self.options.hubs)
        try:
            for name in sorted(self.project.recipes):
                deleted = apply(self.registry, registry_repository(self.project, name), self.options.policy, protected)
                for deletion in deleted:
                    self.reporter.say(f"deleted {deletion.repository}@{deletion.digest[:19]} ({', '.join(deletion.tags)})")
                report.deleted += deleted
        except PublishError as error:
            report.retention_error = error.render()


def nightly(config: RunConfig, options: NightlyOptions, *, reporter: Reporter) -> NightlyReport:
    """Run the night over every image of the project, as `config` sets it up (mirror, CA,
    registry, credentials); never raises for one image's failure."""
    project = config.project
    started = time.monotonic()
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    hub_digests(options.hubs)  # a wrong hub folder is found before anything is built
    registry = Registry(config.registry, config.registry_login) if options.push else None
    if registry is not None:
        registry.ping()
    builder = BuilderOnce(config.builder, config.environ, reporter.say)
    night = _Night(config, Engine(), registry, options, reporter.fetcher(config), reporter, builder)
    plans = plan(project, [], everything=True)  # images whose parents are done run side by side (never raises)
    images = side_by_side(plans, name=lambda item: item.name, after=lambda item: item.recipe.spec.parent, jobs=config.jobs, work=night.run)
    report = NightlyReport(started=stamp, seconds=0.0, registry=config.registry, pushed=options.push, images=images)
    if registry is not None and options.prune:
        night.retention(report)
    report.seconds = round(time.monotonic() - started, 1)
    return report
