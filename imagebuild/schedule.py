"""Images side by side: each starts once its parent is done, at most `jobs` at a time, and two
runs on one host never make the same thing at once (a lock per content hash, not per host).

Used by `build` (pipeline.py) and `nightly` (nightly.py) alike; a CI matrix spreads the same
graph over machines instead (ci.py).
"""

import hashlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def side_by_side(
    items: list[Item], *, name: Callable[[Item], str], after: Callable[[Item], str | None], jobs: int, work: Callable[[Item], Result]
) -> list[Result]:
    """`work` on every item, in `items`' order of results; an item waits for the one `after`
    names when that is among `items`. After a failure nothing new starts; what runs finishes,
    then the first failure is raised."""
    names = {name(item) for item in items}
    done: dict[str, Result] = {}
    pending = list(items)
    running: dict[Future[Result], str] = {}
    failure: BaseException | None = None
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="imagebuild") as pool:
        while running or (pending and failure is None):
            for item in [i for i in pending if after(i) not in names or after(i) in done]:
                if len(running) >= jobs or failure is not None:
                    break
                pending.remove(item)
                running[pool.submit(work, item)] = name(item)
            if not running:  # what is left waits for a parent that failed
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                finished_name = running.pop(future)
                if future.exception() is None:
                    done[finished_name] = future.result()
                elif failure is None:
                    failure = future.exception()
    if failure is not None:
        raise failure
    return [done[name(item)] for item in items]


def lock_file(cache: Path, what: str) -> Path:
    """The host-wide lock file of one thing two runs must not make at once (an image's content
    hash, a root image), in the host cache `cache`."""
    folder = cache / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha256(what.encode()).hexdigest()[:24]}.lock"
