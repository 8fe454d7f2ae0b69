import threading
import time

from imagebuild.system import exclusive


def test_second_holder_waits_for_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path))
    events: list[str] = []
    said: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with exclusive("build", said.append):
            events.append("first in")
            first_in.set()
            time.sleep(0.3)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait()
    with exclusive("build", said.append):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    assert said and "waiting for another imagebuild" in said[0]
