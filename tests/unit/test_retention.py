"""Retention: which published images a nightly run deletes, and the nightly report's verdict."""

from imagebuild.errors import SmokeError
from imagebuild.nightly import ImageNight, NightlyReport
from imagebuild.publish.retention import PublishedImage, RetentionPolicy, to_delete


def image(digest: str, created: str, *tags: str) -> PublishedImage:
    return PublishedImage(f"sha256:{digest}", created, tags or (created[:10],))


NIGHTS = [
    image("a1", "2026-09-14T03:00:00+00:00"),
    image("b1", "2026-10-02T03:00:00+00:00"),
    image("b2", "2026-10-30T03:00:00+00:00"),
    image("c1", "2026-11-28T03:00:00+00:00"),
    image("c2", "2026-11-29T03:00:00+00:00"),
    image("c3", "2026-11-30T03:00:00+00:00"),
    image("c4", "2026-11-30T14:00:00+00:00", "sha-c4"),  # a second build on the same day
    image("c5", "2026-12-01T03:00:00+00:00", "2026-12-01", "edge"),
]


def digests(images: list[PublishedImage]) -> list[str]:
    return [i.digest.removeprefix("sha256:") for i in images]


def test_keeps_the_newest_image_of_the_newest_days_and_months():
    deleted = to_delete(NIGHTS, RetentionPolicy(keep_daily=3, keep_monthly=2), protected=set())
    # days: 12-01 (c5), 11-30 (its newest build, c4), 11-29 (c2); months: 2026-12 (c5), 2026-11 (c4)
    assert digests(deleted) == ["a1", "b1", "b2", "c1", "c3"]


def test_monthlies_reach_back_further_than_dailies():
    deleted = to_delete(NIGHTS, RetentionPolicy(keep_daily=1, keep_monthly=4), protected=set())
    assert digests(deleted) == ["b1", "c1", "c2", "c3"]  # a1 (September), b2 (October), c4 (November) stay


def test_moving_tags_and_hub_selections_are_never_deleted():
    rolled_back = [image("b1", "2026-10-02T03:00:00+00:00", "2026-10-02", "latest"), *(i for i in NIGHTS if i.digest != "sha256:b1")]
    deleted = to_delete(rolled_back, RetentionPolicy(keep_daily=1, keep_monthly=0), protected={"sha256:a1"})
    assert digests(deleted) == ["b2", "c1", "c2", "c3", "c4"]  # a1: a hub offers it; b1: latest; c5: edge


def test_images_of_unknown_age_are_kept():
    assert to_delete([image("x", ""), *NIGHTS[-1:]], RetentionPolicy(1, 0), set()) == []


def test_exit_code_is_that_of_the_first_failure_and_the_report_says_what_happened():
    report = NightlyReport(
        started="2026-12-01T03:00:00+00:00",
        seconds=12.0,
        registry="127.0.0.1:5000",
        pushed=True,
        images=[
            ImageNight("base", action="unchanged", content_hash="a" * 64, smoke="passed before"),
            ImageNight("aiidalab", action="failed", content_hash="b" * 64, error="smoke: boom", exit_code=SmokeError.exit_code),
            ImageNight("aiidalab-qe", action="skipped", error="its parent aiidalab failed"),
            ImageNight(
                "pyiron", action="built", content_hash="c" * 64, pushed=["2026-12-01", "edge"], dev_commits={"pyiron-base": ["1" * 40, "2" * 40]}
            ),
        ],
    )
    assert report.exit_code == SmokeError.exit_code
    assert report.summary().startswith("1 unchanged, 1 failed, 1 skipped, 1 built; 2 tag(s) pushed")
    text = report.markdown()
    assert "| aiidalab | failed | sha-bbbbbbbbbbbb |" in text and "smoke: boom" in text
    assert f"| pyiron-base (commit) | {'1' * 40} | {'2' * 40} |" in text
    assert NightlyReport("t", 1.0, "r", False, [ImageNight("base")]).exit_code == 0
