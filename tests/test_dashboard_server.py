"""The dashboard's HTTP side, over a real socket: the page and its files, the state, the event stream, auth."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request

import pytest

from edge_mcepl.dashboard.server import STATIC, BasicAuth, DashboardServer
from edge_mcepl.dashboard.view import LabView
from edge_mcepl.errors import UserError


@pytest.fixture
def served():
    view = LabView("live", "mqtt://127.0.0.1:1")
    server = DashboardServer(view, "127.0.0.1", 0).start()
    yield view, server.url
    server.stop()


def get(url: str, headers: dict | None = None):
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10)


def read_event(stream) -> tuple[str, dict]:
    kind, data = None, None
    while True:
        line = stream.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and kind:
            return kind, data


def test_the_page_and_every_file_it_names_are_served_from_the_package_with_no_other_origin(served):
    _, url = served
    with get(url) as page:
        html = page.read().decode()
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not load from another origin"
    named = [p for p in re.findall(r"""(?:src|href)=["']([^"']+)["']""", html) if not p.startswith("data:")]
    assert {"static/dashboard.js", "static/vendor/uPlot.iife.min.js"} <= set(named)
    for path in named:
        with get(url + path) as f:
            assert f.read() == (STATIC / path.removeprefix("static/")).read_bytes()
    assert (STATIC / "vendor" / "uPlot.LICENSE").read_text().strip()  # the vendored library keeps its licence


def test_the_stream_sends_the_snapshot_then_each_change(served):
    view, url = served
    with get(url + "api/stream") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        kind, data = read_event(stream)
        assert kind == "snapshot" and data["lab"]["mode"] == "live"
        view.set_traffic("bytes_sent", 1234)
        assert read_event(stream) == ("patch", {"traffic": {"bytes_received": None, "bytes_sent": 1234,
                                                            "clients": None}})
    with get(url + "api/state") as state:
        assert json.loads(state.read())["traffic"]["bytes_sent"] == 1234


def test_an_exposed_page_needs_the_observer_account():
    server = DashboardServer(LabView("live", ""), "127.0.0.1", 0, BasicAuth("lab-observer", "s3cret")).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(server.url)
        assert refused.value.code == 401 and "Basic" in refused.value.headers["WWW-Authenticate"]
        wrong = base64.b64encode(b"lab-observer:guess").decode()
        with pytest.raises(urllib.error.HTTPError):
            get(server.url, {"Authorization": f"Basic {wrong}"})
        right = base64.b64encode(b"lab-observer:s3cret").decode()
        with get(server.url + "api/state", {"Authorization": f"Basic {right}"}) as ok:
            assert ok.status == 200
    finally:
        server.stop()


def test_a_busy_port_is_one_line(served):
    _, url = served
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{port}"):
        DashboardServer(LabView("live", ""), "127.0.0.1", port)


def test_an_exposed_page_speaks_https_with_the_given_certificate(tmp_path):
    import ssl

    from edge_mcepl.comm.broker.tls import ensure_lab_ca
    from edge_mcepl.dashboard.server import Tls

    lab_tls = ensure_lab_ca(tmp_path / "tls", ["127.0.0.1"])
    server = DashboardServer(LabView("live", ""), "127.0.0.1", 0, BasicAuth("lab-observer", "s3cret"),
                             Tls(str(lab_tls.cert_file), str(lab_tls.key_file))).start()
    try:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(lab_tls.ca_file))
        auth = base64.b64encode(b"lab-observer:s3cret").decode()
        request = urllib.request.Request(server.url + "api/state", headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(request, timeout=10, context=context) as ok:
            assert json.loads(ok.read())["lab"]["mode"] == "live"
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is not served
            urllib.request.urlopen(server.url.replace("https", "http") + "api/state", timeout=10)
    finally:
        server.stop()
