import os
import signal
import threading
import time

import pytest

from imagebuild.errors import EngineError, HubError, PublishError
from imagebuild.hub.compose import Compose
from imagebuild.system import exclusive, run, serve


def test_second_holder_waits_for_the_first(tmp_path, monkeypatch):
    monkeypatch.setenv("IMAGEBUILD_CACHE", str(tmp_path))
    events: list[str] = []
    said: list[str] = []
    first_in = threading.Event()

    def first() -> None:
        with exclusive(tmp_path / "build.lock", said.append):
            events.append("first in")
            first_in.set()
            time.sleep(0.3)
            events.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait()
    with exclusive(tmp_path / "build.lock", said.append):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    assert said and "waiting for another imagebuild" in said[0]


def test_a_missing_program_is_one_error_naming_it():
    with pytest.raises(EngineError, match="'no-such-program-here' is not installed"):
        run(["no-such-program-here"], timeout=5)


def test_a_failing_command_names_its_exit_code_and_last_output():
    with pytest.raises(PublishError, match="exit code 3") as failure:
        run(["sh", "-c", "echo the reason >&2; exit 3"], timeout=5, error=PublishError)
    assert "the reason" in str(failure.value)


def test_a_command_over_its_time_is_stopped_and_reported():
    with pytest.raises(EngineError, match="did not finish within 1 s"):
        run(["sleep", "5"], timeout=1)


def test_a_server_answering_gives_its_process_id(tmp_path):
    marker = tmp_path / "up"
    pid = serve(["sh", "-c", f"touch {marker}; sleep 30"], ready=marker.exists, timeout=10, log=tmp_path / "server.log")
    try:
        assert pid > 0 and marker.exists()
    finally:
        os.kill(pid, signal.SIGTERM)


def test_a_server_that_exits_before_answering_is_an_error_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("an earlier start\n" * 1000)
    with pytest.raises(PublishError, match="exited with code 4 before it answered") as failure:
        serve(["sh", "-c", "echo cannot bind the port; exit 4"], ready=lambda: False, timeout=10, log=log, error=PublishError)
    assert "cannot bind the port" in str(failure.value) and failure.value.path == log


def test_a_server_that_never_answers_is_an_error(tmp_path):
    with pytest.raises(EngineError, match="did not answer within 1 s"):
        serve(["sleep", "30"], ready=lambda: False, timeout=1, log=tmp_path / "server.log")


def test_a_server_program_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(EngineError, match="not installed"):
        serve(["no-such-server-here"], ready=lambda: True, timeout=1, log=tmp_path / "server.log")


def test_compose_runs_through_the_wrapper_and_a_timeout_is_a_hub_error(tmp_path):
    slow = Compose(("sh", "-c", "sleep 5"), "test")
    with pytest.raises(HubError, match="did not finish within 1 s"):
        slow.run(tmp_path, "project", "up", timeout=1)
    echo = Compose(("sh", "-c", 'echo "$@"', "compose"), "test")
    assert echo.run(tmp_path, "project", "ps").stdout.split() == ["-p", "project", "-f", "compose.yml", "ps"]
