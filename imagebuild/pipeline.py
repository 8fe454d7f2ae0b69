"""The whole pipeline, top to bottom:

load recipes -> plan -> gather inputs -> render -> mirror rewrite -> assemble context -> build
-> smoke -> tag -> push -> manifest; `imagebuild hub` then offers what was pushed (hub.py).
Images whose parents are done build at the same time, up to the run's `jobs` (schedule.py).

Every step is configured by one RunConfig (config.py), resolved once by the command line:
its mirror, its one CA bundle, its credentials, its Debian archive. An image whose content
hash is already in the engine is not built again (reuse.py decides, for `plan` as for `build`);
`latest` moves only after the smoke notebooks passed. A mirror profile used only while building
leaves the content hash alone: the same recipe gives the same image, whichever mirror delivered it.
"""

import contextlib
import time
from dataclasses import dataclass, replace

from imagebuild.build.buildenv import BUILD_ARG, BuildEnvServer
from imagebuild.build.builders import BuilderOnce
from imagebuild.build.context import BuildContext, assemble
from imagebuild.build.engine import Engine
from imagebuild.build.records import Image
from imagebuild.build.render import render
from imagebuild.build.rootfs import ensure_root_image
from imagebuild.build.stack import read_stack
from imagebuild.config import RunConfig
from imagebuild.errors import BuildError, PublishError
from imagebuild.handoff import Handoff, pull_published
from imagebuild.inputs.fetch import Fetcher
from imagebuild.inputs.gather import gather
from imagebuild.mirrors.build import build_environment, rewrite_for_build
from imagebuild.mirrors.check import preflight
from imagebuild.mirrors.serve import serve_mirror
from imagebuild.plan import BuildPlan, plan
from imagebuild.provenance import ROOT_ID_LABEL, labels, write_image_manifest
from imagebuild.publish.push import PublishResult, publish
from imagebuild.reuse import content_ref, decide, latest_ref
from imagebuild.runs import ImageOutcome, Publishing, Reporter
from imagebuild.schedule import lock_file, side_by_side
from imagebuild.smoketest import smoke_image
from imagebuild.system import exclusive


def prepare(fetcher: Fetcher, plans: list[BuildPlan]) -> list[BuildContext]:
    """Gather inputs, render (or capture, or read), mirror-rewrite and assemble every plan in
    order; a child's FROM names its parent's content tag. Every input is checked before anything
    is rendered. A recipe that keeps the CA (`[ca] keep`) gets the run's one bundle, the one its
    build trusted."""
    config = fetcher.config
    inputs = gather(plans, fetcher)
    hashes: dict[str, str] = {}
    roots: dict[str, tuple[str, ...]] = {}
    contexts = []
    for item in plans:
        spec = item.recipe.spec
        if spec.source is not None:
            from imagebuild.build.binder import capture  # repo2docker: imported only for [source] recipes

            source = inputs[item.name].source
            assert source is not None  # gather() refuses a source recipe without a locked commit
            rendered = capture(item, source, config.mirror, config.cache_dir / "sources")
        elif spec.dockerfile is not None:
            rendered = read_stack(item, inputs[item.name].source, config.cache_dir, fetcher.git_env)
        else:
            chain_roots: tuple[str, ...]
            if spec.parent is None:
                assert spec.root is not None  # RecipeFile's validator: a layered recipe names a parent or a root
                base_ref, chain_roots = spec.root, (spec.root,)
            else:
                base_ref, chain_roots = content_ref(config.project, spec.parent, hashes[spec.parent]), roots[spec.parent][-1:]
            rendered = render(item, base_ref, ca_bundle=config.ca_pem, inputs=inputs[item.name])
            rendered = replace(rendered, roots=chain_roots)
        context = assemble(rewrite_for_build(rendered, config.mirror, config.debian_archive))
        hashes[item.name] = context.content_hash
        roots[item.name] = context.rendered.roots
        contexts.append(context)
    return contexts


def root_image(context: BuildContext) -> str:
    """The image at the bottom of a context's chain, the one its labels name."""
    return context.rendered.roots[-1]


def build(
    config: RunConfig,
    names: list[str],
    *,
    reporter: Reporter,
    everything: bool = False,
    smoke: bool = True,
    rebuild: bool = False,
    push_to: str | None = None,
    moving_tag: str = "latest",
    handoff: Handoff | None = None,
) -> list[ImageOutcome]:
    """Build `names` and their parents; `rebuild` builds even present images, without the layer cache.

    With `push_to` (a registry host), the named images (not their parents) are published there
    once smoke-tested. With `handoff`, images of the chain published under their content tag are
    pulled instead of built (handoff.py).
    """
    plans = plan(config.project, names, everything=everything)
    publishing = Publishing(push_to, moving_tag, set(names) if not everything else {p.name for p in plans})
    contexts = prepare(reporter.fetcher(config), plans)
    if handoff is not None:
        pull_published(config, Engine(), contexts, handoff, reporter.say)
    builder = BuilderOnce(config.builder, config.environ, reporter.say)
    return build_prepared(config, contexts, builder=builder, smoke=smoke, rebuild=rebuild, reporter=reporter, publishing=publishing)


def build_prepared(
    config: RunConfig,
    contexts: list[BuildContext],
    *,
    builder: BuilderOnce,
    smoke: bool = True,
    rebuild: bool = False,
    reporter: Reporter,
    publishing: Publishing,
) -> list[ImageOutcome]:
    """Build, smoke-test and publish contexts `prepare` made, parents first (the nightly prepares
    each image once to look for its content hash in the registry, then builds those contexts),
    with the run's `builder` (chosen once, when the first image is built)."""
    engine = Engine()
    mirror = config.mirror
    logins = config.logins()
    environment = build_environment(mirror, logins, config.ca_pem, config.debian_archive)
    with contextlib.ExitStack() as services:

        def start_mirror_services() -> None:
            """Only when something is built: serve a synced local index, then check the mirror answers."""
            if mirror is None:
                return
            served = serve_mirror(mirror, logins)
            if served is not None:
                services.enter_context(served)
                reporter.say(f"serving {mirror.serve_pypi} at {mirror.spec.pypi.index_url}")  # type: ignore[union-attr]
            preflight(mirror, ca_file=config.ca_file, logins=logins)

        server = services.enter_context(
            BuildEnvServer(environment, config.project.config.build.env_port, on_start=start_mirror_services)
        )
        run = _Build(config, engine, builder, {}, server, smoke=smoke, rebuild=rebuild, publishing=publishing)
        several = config.jobs > 1 and len(contexts) > 1
        return side_by_side(
            contexts,
            name=lambda context: context.rendered.plan.name,
            after=lambda context: context.rendered.plan.recipe.spec.parent,
            jobs=config.jobs,
            work=lambda context: run.one(context, reporter.prefixed(context.rendered.plan.name) if several else reporter),
        )


def push(config: RunConfig, names: list[str], *, moving_tag: str, reporter: Reporter) -> list[PublishResult]:
    """Publish the present, smoke-tested builds of `names` (the content of the current recipes,
    with the same mirror and CA as `build`, so the same content hash) to the run's registry."""
    project = config.project
    engine = Engine()
    contexts = prepare(Fetcher(replace(config, offline=True), reporter.say), plan(project, names))  # from cached inputs, as `plan`
    results = []
    for context in contexts:
        item = context.rendered.plan
        if item.name not in names:
            continue
        decision = decide(project, engine, context)
        if decision.action != "reuse":
            state = "not built" if decision.action == "build" else "built but not smoke-tested"
            raise PublishError(
                f"{item.name}: the current recipe's image ({decision.ref}) is {state}; only smoke-tested images are pushed",
                hint=f"run 'imagebuild build {item.name}' with the same --mirror and --ca-cert (add --push to publish once it passes)",
            )
        assert decision.image is not None
        result = publish(
            project, engine, item, decision.image, config.registry, login=config.registry_login, moving=moving_tag, say=reporter.say
        )
        write_image_manifest(project, engine, context, decision.image, None, result, config.mirror)
        results.append(result)
    return results


@dataclass(frozen=True)
class _Build:
    """What every image of one run shares: configuration, engine, builder, root images, build environment, options."""

    config: RunConfig
    engine: Engine
    builder: BuilderOnce
    root_ids: dict[str, str]
    """The root images made present so far (only when something is built on them), by reference."""
    server: BuildEnvServer
    smoke: bool
    rebuild: bool
    publishing: Publishing

    def one(self, context: BuildContext, reporter: Reporter) -> ImageOutcome:
        """Build (or reuse), smoke-test, tag and publish one image, holding its content hash's lock:
        a second run with the same content waits and then reuses; any other goes on."""
        with exclusive(lock_file(self.config.cache_dir, f"image {context.content_hash}"), reporter.say):
            return self._one(context, reporter)

    def _one(self, context: BuildContext, reporter: Reporter) -> ImageOutcome:
        project, engine = self.config.project, self.engine
        item = context.rendered.plan
        started = time.monotonic()
        decision = decide(project, engine, context, rebuild=self.rebuild)
        if decision.action == "build":
            image = self._build(context, decision.ref, reporter)
        else:
            assert decision.image is not None
            image = decision.image
            reporter.say(f"reusing {decision.ref}: an image with content hash {context.short_hash} is present")
        result = None
        if self.smoke and decision.action != "reuse":  # `reuse` means latest is this image: it passed
            result = smoke_image(project, engine, item, decision.ref, [], reporter.say)
            engine.tag(image, latest_ref(project, item.name))
        passed = decision.action == "reuse" or result is not None
        published = self._publish(context, image, decision.ref, reporter, passed=passed)
        write_image_manifest(project, engine, context, image, result, published, self.config.mirror)
        return ImageOutcome(
            name=item.name,
            content_hash=context.content_hash,
            ref=decision.ref,
            image_id=str(image.id),
            action="built" if decision.action == "build" else "reused",
            seconds=round(time.monotonic() - started, 2),
            smoke=result,
            published=published,
        )

    def _publish(self, context: BuildContext, image: Image, ref: str, reporter: Reporter, *, passed: bool) -> PublishResult | None:
        item = context.rendered.plan
        if not self.publishing.wants(item.name):
            return None
        assert self.publishing.registry is not None
        if not passed:
            raise PublishError(
                f"{item.name}: {ref} has not passed its smoke notebooks; it is not pushed", hint="build without --no-smoke to push"
            )
        return publish(
            self.config.project,
            self.engine,
            item,
            image,
            self.publishing.registry,
            login=self.config.registry_login,
            moving=self.publishing.moving_tag,
            say=reporter.say,
        )

    def _root_id(self, context: BuildContext, reporter: Reporter) -> str:
        """The ID of the root image the context's labels name: its parent's (a child builds on its
        parent alone, so a parent pulled from a registry needs no root here), else every root image
        it builds on made present (pulled or bootstrapped, once per host at a time)."""
        if context.rendered.plan.recipe.spec.parent is not None:
            parent = self.engine.image(context.rendered.base_ref)
            if parent is not None and ROOT_ID_LABEL in (parent.labels or {}):
                return parent.labels[ROOT_ID_LABEL]
        for root in context.rendered.roots:
            with exclusive(lock_file(self.config.cache_dir, f"root {root}"), reporter.say):
                if root not in self.root_ids:
                    self.root_ids[root] = ensure_root_image(self.engine, root, self.config, reporter.say)
        return self.root_ids[root_image(context)]

    def _build(self, context: BuildContext, ref: str, reporter: Reporter) -> Image:
        item = context.rendered.plan
        mirror = self.config.mirror
        output = self.config.output_dir / item.name
        output.mkdir(parents=True, exist_ok=True)
        (output / "Dockerfile").write_text(context.rendered.dockerfile)
        builder = self.builder()
        buildkit = builder.uses_buildkit
        secret = self.server.secret_file() if buildkit else None
        build_env = "" if buildkit else self.server.url()
        reporter.say(f"building {item.name} ({ref})" + (f" through mirror '{mirror.name}'" if mirror else ""))
        try:
            return self.engine.build(
                context,
                builder=builder,
                tag=ref,
                labels=labels(self.config.project, context, self._root_id(context, reporter)),
                buildargs={**dict(context.rendered.build_args), BUILD_ARG: build_env},
                secret=secret,
                nocache=self.rebuild,
                log_path=output / "build.log",
                on_step=reporter.step,
                environ=dict(self.config.environ),
            )
        except BuildError as exc:
            if mirror is not None:
                exc.hint = (
                    f"{exc.hint}; it was built through mirror '{mirror.name}' ({mirror.path}): "
                    f"'imagebuild mirror check {mirror.name}' probes it"
                )
            raise
