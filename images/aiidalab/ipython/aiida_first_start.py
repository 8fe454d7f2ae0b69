"""A kernel's first cell waits while 30-aiida-profile.sh still prepares AiiDA in the background
(creates the profile on a first start, follows moved service ports on later ones), saying so in
the cell's output, instead of failing: aiida-core reads its configuration once per process, so a
kernel that read it before the profile existed would fail `load_profile()` until restarted.
The hook marks the work with /tmp/aiida-prepare-<uid>.pending and removes the mark when done."""


def _wait_for_aiida_in_the_first_cell() -> None:
    import os
    import time
    from pathlib import Path

    from IPython import get_ipython
    from IPython.display import HTML, display

    pending = Path(f"/tmp/aiida-prepare-{os.getuid()}.pending")
    waited = False

    def first_cell(*_: object) -> None:
        nonlocal waited
        if waited:
            return
        waited = True
        if not pending.exists():
            return
        note = display(HTML("<p><b>Setting up AiiDA</b>: this first start creates your AiiDA profile; the cell continues when it is ready …</p>"), display_id=True)
        deadline = time.monotonic() + 600
        while pending.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if note is not None:
            note.update(HTML(""))

    shell = get_ipython()
    if shell is not None:
        shell.events.register("pre_run_cell", first_cell)


_wait_for_aiida_in_the_first_cell()
del _wait_for_aiida_in_the_first_cell
