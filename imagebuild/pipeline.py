"""The whole pipeline, top to bottom:

load recipes -> plan -> gather inputs -> render -> mirror rewrite -> assemble context -> build
-> smoke -> tag -> push -> manifest; `imagebuild hub` then offers what was pushed (hub.py).

An image whose content hash is already in the engine is not built again; `latest` moves
only after the smoke notebooks passed. A mirror profile used only while building leaves the
content hash alone: the same recipe gives the same image, whichever mirror delivered it.
"""

import contextlib
import datetime
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from imagebuild import __version__
from imagebuild.build.buildenv import BUILD_ARG, BuildEnvServer
from imagebuild.build.context import HASH_LABEL, IMAGE_LABEL, BuildContext, assemble
from imagebuild.build.engine import Engine, Image
from imagebuild.build.render import input_provenance, render
from imagebuild.build.rootfs import ensure_root_image, host_archive
from imagebuild.build.smoke import SMOKED_REF_FILE, NotebookResult, SmokeResult, run_smoke
from imagebuild.errors import BuildError, PublishError
from imagebuild.inputs.fetch import Fetcher
from imagebuild.inputs.gather import gather
from imagebuild.mirrors.build import build_environment, rewrite_for_build
from imagebuild.mirrors.check import preflight
from imagebuild.mirrors.serve import serve_mirror
from imagebuild.model.mirror import Mirror
from imagebuild.plan import BuildPlan, Project, plan
from imagebuild.publish.manifest import INVENTORY_PATH, SECTIONS, ImageFacts, manifest
from imagebuild.publish.manifest import write as write_manifest
from imagebuild.publish.push import PublishResult, publish
from imagebuild.system import exclusive


@dataclass(frozen=True)
class Reporter:
    """How the pipeline talks: `say` for events, `step` for the current build step."""

    say: Callable[[str], None]
    step: Callable[[str], None]


@dataclass(frozen=True)
class ImageOutcome:
    name: str
    content_hash: str
    ref: str
    image_id: str
    action: str  # "built" or "reused"
    seconds: float
    smoke: SmokeResult | None
    published: PublishResult | None = None


def content_ref(project: Project, name: str, content_hash: str) -> str:
    return f"{project.config.build.repository}/{name}:sha-{content_hash[:12]}"


def latest_ref(project: Project, name: str) -> str:
    return f"{project.config.build.repository}/{name}:latest"


def smoke_passed(project: Project, engine: Engine, name: str, image_id: str) -> bool:
    """`latest` moves only after a passing smoke run, so it pointing here means this image passed."""
    latest = engine.image(latest_ref(project, name))
    return latest is not None and latest.id == image_id


def debian_archive(project: Project) -> str:
    """The Debian archive root images are bootstrapped from and whose URL their apt sources hold."""
    return project.config.bootstrap.archive or host_archive()


def prepare(project: Project, plans: list[BuildPlan], fetcher: Fetcher) -> list[BuildContext]:
    """Gather inputs, render, mirror-rewrite and assemble every plan in order; a child's FROM
    names its parent's content tag. Every input is checked before anything is rendered."""
    inputs = gather(plans, fetcher)
    hashes: dict[str, str] = {}
    contexts = []
    archive = debian_archive(project)
    mirror = fetcher.mirror
    for item in plans:
        spec = item.recipe.spec
        if spec.source is not None:
            from imagebuild.build.binder import capture  # repo2docker: imported only for [source] recipes

            source = inputs[item.name].source
            assert source is not None  # gather() refuses a source recipe without a locked commit
            rendered = capture(item, source, mirror)
        else:
            base_ref = spec.root if spec.parent is None else content_ref(project, spec.parent, hashes[spec.parent])
            rendered = render(item, base_ref or "", ca_bundle=fetcher.ca_bundle, inputs=inputs[item.name])
        context = assemble(rewrite_for_build(rendered, mirror, archive))
        hashes[item.name] = context.content_hash
        contexts.append(context)
    return contexts


def root_image(context: BuildContext) -> str:
    """The image at the bottom of a context's chain: its recipes' root, or a captured repository's base."""
    rendered = context.rendered
    return rendered.base_ref if rendered.plan.recipe.spec.source is not None else rendered.plan.root_image


def smoke_notebooks(
    item: BuildPlan, extra: list[Path], assets_in_image: set[str]
) -> tuple[list[tuple[str, Path]], list[NotebookResult]]:
    """The notebooks to run: the image's own, its ancestors' (they must still pass), and the
    admin's; and those skipped because the optional asset they need is not in the image."""
    run, skipped = [], []
    for recipe in [*reversed(item.ancestors), item.recipe]:
        needs = recipe.spec.smoke.needs_asset
        for path in recipe.notebooks:
            # (a [source] recipe needs no asset, and its notebooks are not under its folder)
            asset = needs.get(path.relative_to(recipe.directory).as_posix()) if needs else None
            if asset is None or asset in assets_in_image:
                run.append((recipe.name, path))
            else:
                reason = f"optional asset '{asset}' is not in the image"
                skipped.append(NotebookResult(owner=recipe.name, notebook=path.name, ok=True, seconds=0.0, skipped=reason))
    return run + [("extra", path) for path in extra], skipped


def _revision(root: Path) -> str:
    completed = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return completed.stdout.strip() if completed.returncode == 0 else "unknown"


def _labels(project: Project, context: BuildContext, root_id: str) -> dict[str, str]:
    recipe = context.rendered.plan.recipe
    return {
        HASH_LABEL: context.content_hash,
        IMAGE_LABEL: recipe.name,
        "io.imagebuild.base": context.rendered.base_ref,
        "io.imagebuild.root-id": root_id,
        "io.imagebuild.builder-version": __version__,
        "org.opencontainers.image.title": recipe.name,
        "org.opencontainers.image.description": recipe.spec.description,
        "org.opencontainers.image.created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "org.opencontainers.image.revision": _revision(project.root),
        "org.opencontainers.image.version": f"sha-{context.short_hash}",
    }


def smoke_image(
    project: Project, engine: Engine, item: BuildPlan, ref: str, extra: list[Path], reporter: Reporter
) -> SmokeResult:
    image = engine.image(ref)
    labels = (image.labels if image else None) or {}
    notebooks, skipped = smoke_notebooks(item, extra, set(input_provenance(labels)["assets"]))
    reporter.say(f"smoke-testing {ref} with {len(notebooks)} notebook(s)")
    for result in skipped:
        reporter.say(f"warning: skipping {result.owner}/{result.notebook}: {result.skipped}")
    result = run_smoke(
        engine,
        ref,
        notebooks,
        cell_timeout=item.recipe.spec.smoke.cell_timeout,
        output_dir=project.output_dir / item.name / "smoke",
        skipped=skipped,
    )
    if not result.ok:
        raise result.failure()
    return result


def build(
    project: Project,
    names: list[str],
    *,
    everything: bool = False,
    smoke: bool = True,
    rebuild: bool = False,
    fetcher: Fetcher,
    reporter: Reporter,
    push_to: str | None = None,
    moving_tag: str = "latest",
) -> list[ImageOutcome]:
    """Build `names` and their parents; `rebuild` builds even present images, without the layer cache.

    With `push_to`, the named images (not their parents) are published there once smoke-tested.
    """
    plans = plan(project, names, everything=everything)
    publishing = Publishing(push_to, moving_tag, set(names) if not everything else {p.name for p in plans})
    return build_prepared(
        project, prepare(project, plans, fetcher), smoke=smoke, rebuild=rebuild, fetcher=fetcher, reporter=reporter, publishing=publishing
    )


def build_prepared(
    project: Project,
    contexts: list[BuildContext],
    *,
    smoke: bool = True,
    rebuild: bool = False,
    fetcher: Fetcher,
    reporter: Reporter,
    publishing: "Publishing",
) -> list[ImageOutcome]:
    """Build, smoke-test and publish contexts `prepare` made, parents first (the nightly prepares
    each image once to look for its content hash in the registry, then builds those contexts)."""
    engine = Engine()
    mirror = fetcher.mirror
    environment = build_environment(mirror, fetcher.ca_bundle, debian_archive(project))
    with exclusive("build", reporter.say), contextlib.ExitStack() as services:

        def start_mirror_services() -> None:
            """Only when something is built: serve a synced local index, then check the mirror answers."""
            if mirror is None:
                return
            served = serve_mirror(mirror)
            if served is not None:
                services.enter_context(served)
                reporter.say(f"serving {mirror.serve_pypi} at {mirror.spec.pypi.index_url}")  # type: ignore[union-attr]
            preflight(mirror, ca_bundle=environment.ca_bundle)

        server = services.enter_context(
            BuildEnvServer(environment, project.config.build.env_port, on_start=start_mirror_services)
        )
        root_ids = {
            root: ensure_root_image(engine, root, debian_archive(project), reporter.say, mirror)
            for root in sorted({root_image(context) for context in contexts})
        }
        build = _Build(
            project, engine, root_ids, server, mirror, smoke=smoke, rebuild=rebuild, publishing=publishing, reporter=reporter
        )
        return [build.one(context) for context in contexts]


@dataclass(frozen=True)
class Publishing:
    """Where and which smoke-tested images of a run are pushed (none without a registry)."""

    registry: str | None
    moving_tag: str
    names: set[str]

    def wants(self, name: str) -> bool:
        return self.registry is not None and name in self.names


def push(
    project: Project, names: list[str], registry: str, *, moving_tag: str, fetcher: Fetcher, reporter: Reporter
) -> list[PublishResult]:
    """Publish the present, smoke-tested builds of `names` (the content of the current recipes)."""
    engine = Engine()
    contexts = prepare(project, plan(project, names), fetcher)
    results = []
    for context in contexts:
        item = context.rendered.plan
        if item.name not in names:
            continue
        ref = content_ref(project, item.name, context.content_hash)
        image = engine.image(ref)
        if image is None or not smoke_passed(project, engine, item.name, image.id):
            state = "not built" if image is None else "built but not smoke-tested"
            raise PublishError(
                f"{item.name}: the current recipe's image ({ref}) is {state}; only smoke-tested images are pushed",
                hint=f"run 'imagebuild build {item.name}' (add --push to publish once it passes)",
            )
        result = publish(project, engine, item, image, registry, moving=moving_tag, say=reporter.say)
        write_image_manifest(project, engine, context, image, None, result, fetcher.mirror)
        results.append(result)
    return results


def _earlier_smoke(folder: Path, ref: str) -> list[dict]:
    """The results of the last smoke run in `folder`, if it was a run of `ref` (else none)."""
    smoked = folder / SMOKED_REF_FILE
    if not smoked.is_file() or smoked.read_text() != ref:
        return []
    return json.loads((folder / "smoke.json").read_text())


def _image_facts(engine: Engine, ref: str, image: Image, written: Path) -> ImageFacts:
    """The image's labels, size and inventory. The inventory is taken from the manifest written
    for this very image (same content tag, build time and size) when there is one: copying it out
    of the image (a container created and removed) is the slowest step of a run that reuses it."""
    labels, size = image.labels or {}, image.attrs["Size"]
    try:
        earlier = json.loads(written.read_text()) if written.is_file() else {}
    except (OSError, ValueError):
        earlier = {}
    created = labels.get("org.opencontainers.image.created")
    if (
        isinstance(earlier, dict)
        and created is not None
        and (earlier.get("ref"), earlier.get("created"), earlier.get("size")) == (ref, created, size)
    ):
        return ImageFacts(ref, labels, size, {section: earlier.get(section, {}) for section in SECTIONS})
    return ImageFacts.of(ref, labels, size, engine.read_file(ref, INVENTORY_PATH))


def write_image_manifest(
    project: Project,
    engine: Engine,
    context: BuildContext,
    image: Image,
    smoke: SmokeResult | None,
    published: PublishResult | None,
    mirror: Mirror | None,
) -> None:
    """build/NAME/manifest.{json,md}: the image's inventory, provenance, smoke results, tags."""
    name = context.rendered.plan.name
    ref = content_ref(project, name, context.content_hash)
    facts = _image_facts(engine, ref, image, project.output_dir / name / "manifest.json")
    runs = [asdict(n) for n in smoke.notebooks] if smoke else _earlier_smoke(project.output_dir / name / "smoke", ref)
    document = manifest(
        facts,
        name=name,
        content_hash=context.content_hash,
        mirror=mirror.name if mirror else None,
        smoke=runs,
        published=asdict(published) if published else None,
    )
    write_manifest(document, project.output_dir / name)


@dataclass(frozen=True)
class _Build:
    """What every image of one run shares: engine, root images, build environment, options."""

    project: Project
    engine: Engine
    root_ids: dict[str, str]
    server: BuildEnvServer
    mirror: Mirror | None
    smoke: bool
    rebuild: bool
    publishing: "Publishing"
    reporter: Reporter

    def one(self, context: BuildContext) -> ImageOutcome:
        project, engine, reporter = self.project, self.engine, self.reporter
        item = context.rendered.plan
        ref = content_ref(project, item.name, context.content_hash)
        started = time.monotonic()
        image = engine.image(ref)
        action = "reused"
        if self.rebuild or image is None or (image.labels or {}).get(HASH_LABEL) != context.content_hash:
            action = "built"
            image = self._build(context, ref)
        else:
            reporter.say(f"reusing {ref}: an image with content hash {context.short_hash} is present")
        result = None
        if self.smoke and not smoke_passed(project, engine, item.name, image.id):
            result = smoke_image(project, engine, item, ref, [], reporter)
            engine.tag(image, latest_ref(project, item.name))  # (when smoke passed before, latest is this image)
        published = None
        if self.publishing.wants(item.name):
            assert self.publishing.registry is not None
            if not smoke_passed(project, engine, item.name, image.id):
                raise PublishError(
                    f"{item.name}: {ref} has not passed its smoke notebooks; it is not pushed",
                    hint="build without --no-smoke to push",
                )
            published = publish(
                project, engine, item, image, self.publishing.registry, moving=self.publishing.moving_tag, say=reporter.say
            )
        write_image_manifest(project, engine, context, image, result, published, self.mirror)
        return ImageOutcome(
            name=item.name,
            content_hash=context.content_hash,
            ref=ref,
            image_id=image.id,
            action=action,
            seconds=round(time.monotonic() - started, 2),
            smoke=result,
            published=published,
        )

    def _build(self, context: BuildContext, ref: str) -> Image:
        item = context.rendered.plan
        output = self.project.output_dir / item.name
        output.mkdir(parents=True, exist_ok=True)
        (output / "Dockerfile").write_text(context.rendered.dockerfile)
        build_env = self.server.url()
        self.reporter.say(f"building {item.name} ({ref})" + (f" through mirror '{self.mirror.name}'" if self.mirror else ""))
        try:
            return self.engine.build(
                context,
                tag=ref,
                labels=_labels(self.project, context, self.root_ids[root_image(context)]),
                buildargs={BUILD_ARG: build_env},
                nocache=self.rebuild,
                log_path=output / "build.log",
                on_step=self.reporter.step,
            )
        except BuildError as exc:
            if self.mirror is not None:
                exc.hint = (
                    f"{exc.hint}; it was built through mirror '{self.mirror.name}' ({self.mirror.path}): "
                    f"'imagebuild mirror check {self.mirror.name}' probes it"
                )
            raise
