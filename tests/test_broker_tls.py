"""TLS with the lab's own CA: made once and kept, a server certificate naming the listener, pinned by clients."""

from __future__ import annotations

import ipaddress
import stat

import pytest
from cryptography import x509

from edge_mcepl.comm.broker.launcher import start_broker
from edge_mcepl.comm.broker.tls import ensure_lab_ca
from edge_mcepl.comm.client import BrokerAddress, MqttConnection, MqttOptions
from edge_mcepl.comm.topics import status_topic
from edge_mcepl.errors import UserError

from labsupport import needs_mosquitto, wait_until

LAB = "tls"


def cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_lab_ca_signs_a_server_certificate_naming_each_host_by_its_kind(tmp_path):
    tls = ensure_lab_ca(tmp_path / "tls", ["127.0.0.1", "lab-broker.local", "::1"])
    ca, server = cert(tls.ca_file), cert(tls.cert_file)
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert san.get_values_for_type(x509.DNSName) == ["lab-broker.local"]
    assert (mode(tls.key_file), mode(tmp_path / "tls" / "ca.key")) == (0o600, 0o600)


def test_the_ca_is_kept_and_the_server_certificate_reissued_only_for_a_new_host(tmp_path):
    first = ensure_lab_ca(tmp_path, ["127.0.0.1", "lab.local"])
    ca, server, key = first.ca_file.read_bytes(), first.cert_file.read_bytes(), first.key_file.read_bytes()
    again = ensure_lab_ca(tmp_path, ["lab.local"])  # covered: the same files
    assert (again.ca_file.read_bytes(), again.cert_file.read_bytes(), again.key_file.read_bytes()) == (ca, server, key)
    wider = ensure_lab_ca(tmp_path, ["127.0.0.1", "10.0.0.7"])
    assert wider.ca_file.read_bytes() == ca and wider.cert_file.read_bytes() != server
    new = cert(wider.cert_file)
    new.verify_directly_issued_by(cert(wider.ca_file))  # devices that pinned the CA still trust the broker
    assert ipaddress.ip_address("10.0.0.7") in new.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)


def test_a_damaged_lab_ca_is_a_one_line_error_not_a_silent_new_ca(tmp_path):
    ensure_lab_ca(tmp_path, ["127.0.0.1"])
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(UserError, match="cannot load it") as refused:
        ensure_lab_ca(tmp_path, ["127.0.0.1"])
    assert "\n" not in str(refused.value) and "devices must then pin the new ca.pem" in str(refused.value)


def test_the_builtin_broker_refuses_tls_and_auto_is_plain_on_loopback(tmp_path):
    for host, tls in (("127.0.0.1", "on"), ("0.0.0.0", "auto")):
        with pytest.raises(UserError, match="TLS needs mosquitto"):
            start_broker(tmp_path / "b", LAB, 1, kind="python", host=host, port=0, tls=tls)
    assert not (tmp_path / "b").exists()
    handle = start_broker(tmp_path / "b", LAB, 1, kind="python", port=0)
    handle.stop()
    assert handle.url.startswith("mqtt://") and handle.ca_file is None


def connect(handle, url: str, ca_file, client_id: str, **kw) -> MqttConnection:
    user, password = handle.credentials.for_agent(0)
    options = MqttOptions(user, password, ca_file=str(ca_file) if ca_file else None, connect_timeout=2, **kw)
    return MqttConnection(BrokerAddress.parse(url), options, client_id, name=client_id).connect()


@needs_mosquitto
def test_mosquitto_speaks_tls_to_a_client_pinning_the_lab_ca_and_refuses_the_others(tmp_path):
    handle = start_broker(tmp_path / "b", LAB, 1, kind="mosquitto", port=0, tls="on")
    other_ca = ensure_lab_ca(tmp_path / "other", ["127.0.0.1"]).ca_file
    got: list[bytes] = []
    try:
        assert handle.url == f"mqtts://127.0.0.1:{handle.port}" == handle.credentials.broker_url
        assert handle.ca_file == tmp_path / "b" / "tls" / "ca.pem"
        conn = connect(handle, handle.url, handle.ca_file, "tls-pinned")  # the host name is checked: in the SAN
        conn.on(status_topic(LAB, 0), lambda _t, payload: got.append(payload))
        conn.subscribe([status_topic(LAB, 0)])
        conn.publish(status_topic(LAB, 0), b"over TLS").wait_for_publish(5)
        wait_until(lambda: got, 10, "the message over TLS")
        conn.close()
        refusals = {}
        for what, url, ca in (("another CA", handle.url, other_ca),
                              ("a name not in the certificate", f"mqtts://localhost:{handle.port}", handle.ca_file),
                              ("plain TCP", f"mqtt://127.0.0.1:{handle.port}", None)):
            with pytest.raises(UserError) as refused:
                connect(handle, url, ca, "tls-refused")
            refusals[what] = str(refused.value)
        # the same URL without the name check connects: the name, nothing else, was refused
        connect(handle, f"mqtts://localhost:{handle.port}", handle.ca_file, "tls-unchecked", tls_insecure=True).close()
    finally:
        handle.stop()
    assert got == [b"over TLS"]
    assert all("cannot reach the MQTT broker" in text and "\n" not in text for text in refusals.values()), refusals


@needs_mosquitto
def test_auto_speaks_tls_beyond_loopback_with_a_certificate_for_this_machines_addresses(tmp_path):
    handle = start_broker(tmp_path / "b", LAB, 1, kind="mosquitto", host="0.0.0.0", port=0)
    try:
        assert handle.url.startswith("mqtts://") and handle.ca_file is not None
        connect(handle, f"mqtts://127.0.0.1:{handle.port}", handle.ca_file, "tls-auto").close()
    finally:
        handle.stop()
