"""The registry client against a small loopback server: answers that are not what a registry
sends (an HTML page, a layer that is no tar, a refused connection) are one PublishError each."""

import http.server
import threading
from collections.abc import Iterator

import pytest

from imagebuild.errors import PublishError
from imagebuild.publish.manifest import ImageFacts, changes
from imagebuild.publish.manifest import _debian_order as debian_order
from imagebuild.publish.registry import Registry, RemoteImage

ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/v2/": (200, "application/json", b"{}"),
    "/v2/proxied/tags/list?n=1000": (200, "text/html", b"<html>Sign in to continue</html>"),
    "/v2/listed/tags/list?n=1000": (200, "application/json", b'["a", "list"]'),
    "/v2/broken/blobs/sha256:layer": (200, "application/octet-stream", b"not a tar at all" * 64),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, kind, body = ANSWERS.get(self.path, (404, "application/json", b'{"errors": []}'))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def registry() -> Iterator[Registry]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield Registry(f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


def test_an_html_page_where_json_belongs_is_a_publish_error(registry):
    with pytest.raises(PublishError, match="listing the tags of proxied: the registry answered with no JSON object"):
        registry.tags("proxied")


def test_json_that_is_not_an_object_is_a_publish_error(registry):
    with pytest.raises(PublishError, match="no JSON object"):
        registry.tags("listed")


def test_a_layer_that_is_no_tar_is_a_publish_error(registry):
    image = RemoteImage("1", "sha256:m", "sha256:c", {}, None, layers=(("sha256:layer", 10),))
    with pytest.raises(PublishError, match="reading layer sha256:layer of broken:1: the registry sent no readable layer"):
        registry.read_file("broken", image, "/usr/local/share/imagebuild/inventory.json")


def test_a_missing_tag_is_none_and_a_registry_that_does_not_answer_an_error(registry):
    assert registry.image("absent", "1") is None
    registry.ping()
    with pytest.raises(PublishError, match="does not answer"):
        Registry("127.0.0.1:9").ping()


@pytest.mark.parametrize("inventory", [b"not json", b"\xff\xfe", b"[1, 2]", b'{"os_packages": ["a list"]}'])
def test_an_inventory_imagebuild_did_not_write_is_a_publish_error(inventory):
    with pytest.raises(PublishError, match="is not the JSON object imagebuild writes"):
        ImageFacts.of("base:1", {}, 0, inventory)


def test_versions_dpkg_cannot_read_are_changed_not_a_traceback():
    assert debian_order("1.0", "not a version!") == 0
    assert [c.kind for c in changes({"p": "1.0"}, {"p": "::"}, debian_order)] == ["changed"]
