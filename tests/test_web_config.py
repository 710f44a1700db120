"""`--web.config.file` end to end: TLS, basic authentication and mutual TLS on a real exporter,
scraped by a real Prometheus, with a certificate rotated while it scrapes.

Certificates come from `openssl` at test time: a CA, a server certificate for 127.0.0.1, a client
certificate, one from an unknown CA and one that expired. Every web configuration used is first
accepted by `promtool check web-config`. razer-exporter stands in for every exporter (the
serving code is odin-common's, shared by all six; on a machine without Razer hardware it has
nothing slow to read).
"""
from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import time
from base64 import b64encode
from pathlib import Path

import bcrypt
import pytest

from odin.exporters import Proc, binary, free_port, wait_http
from odin.prometheus import Client

PASSWORD = "correct horse battery staple"
EXPORTER = "razer-exporter"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", "-days", "30", cwd=d)


def make_cert(d: Path, name: str, ca: str, ext: str, dates: tuple[str, str] | None = None):
    """A key and certificate `name` signed by `ca`, with extensions `ext`; `dates`
    (YYYYMMDDHHMMSSZ start and end) through `openssl ca` for a certificate in the past."""
    (d / f"{name}.ext").write_text(ext)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    if dates is None:
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "30", "-extfile", f"{name}.ext", cwd=d)
        return
    db = d / f"{name}-db"
    db.mkdir()
    (db / "index.txt").write_text("")
    (db / "serial").write_text("1000\n")
    (d / f"{name}-ca.cnf").write_text(f"""
[ca]
default_ca = ca
[ca]
database = {db}/index.txt
serial = {db}/serial
new_certs_dir = {db}
default_md = sha256
policy = any
[any]
commonName = supplied
""")
    openssl("ca", "-batch", "-config", f"{name}-ca.cnf", "-cert", f"{ca}.pem", "-keyfile", f"{ca}.key",
            "-in", f"{name}.csr", "-out", f"{name}.pem", "-startdate", dates[0], "-enddate", dates[1],
            "-extfile", f"{name}.ext", "-notext", cwd=d)


SERVER_EXT = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
CLIENT_EXT = "extendedKeyUsage=clientAuth\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not shutil.which("openssl") or not shutil.which("promtool"):
        pytest.skip("needs openssl and promtool")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "server", "ca", SERVER_EXT)
    make_cert(d, "server2", "ca", SERVER_EXT)
    make_cert(d, "client", "ca", CLIENT_EXT)
    make_cert(d, "stranger", "other-ca", CLIENT_EXT)
    make_cert(d, "expired", "ca", CLIENT_EXT, ("20200101000000Z", "20200201000000Z"))
    return d


def web_config(d: Path, name: str, text: str) -> Path:
    path = d / f"{name}.yml"
    path.write_text(text)
    r = subprocess.run(["promtool", "check", "web-config", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, f"promtool refuses {name}: {r.stdout}{r.stderr}"
    return path


class Served:
    def __init__(self, d: Path, name: str, config: Path, *extra: str):
        self.port = free_port()
        self.proc = Proc([binary(EXPORTER), f"--web.listen-address=127.0.0.1:{self.port}",
                          f"--web.config.file={config}", f"--path.sysfs={d / 'nosys'}",
                          f"--path.dev={d / 'nodev'}", *extra], d / f"{name}.log")
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (d / f"{name}.log").read_text()
                time.sleep(0.05)


def tls_context(d: Path, client: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(d / "ca.pem"))
    if client:
        ctx.load_cert_chain(str(d / f"{client}.pem"), str(d / f"{client}.key"))
    return ctx


def get(port: int, path: str, ctx: ssl.SSLContext | None, auth: tuple[str, str] | None = None):
    conn = (http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10) if ctx
            else http.client.HTTPConnection("127.0.0.1", port, timeout=10))
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


@pytest.fixture(scope="module")
def servers(certs):
    d = certs
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    # The certificate the rotation test replaces.
    shutil.copy(d / "server.pem", d / "live.pem")
    shutil.copy(d / "server.key", d / "live.key")
    basic = web_config(d, "basic", f"""
tls_server_config:
  cert_file: {d}/live.pem
  key_file: {d}/live.key
basic_auth_users:
  prometheus: {hashed}
http_server_config:
  headers:
    X-Frame-Options: deny
""")
    mutual = web_config(d, "mutual", f"""
tls_server_config:
  cert_file: {d}/server.pem
  key_file: {d}/server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {d}/ca.pem
  min_version: TLS12
""")
    out = {"basic": Served(d, "basic", basic), "probes": Served(d, "probes", basic, "--web.unauthenticated-probes"),
           "mutual": Served(d, "mutual", mutual)}
    yield out
    for s in out.values():
        assert s.proc.stop() == 0


def test_basic_auth_guards_every_endpoint(certs, servers):
    port = servers["basic"].port
    ctx = tls_context(certs)
    for path in ["/", "/metrics", "/health", "/healthz", "/ready", "/nope"]:
        status, headers, _ = get(port, path, ctx)
        assert status == 401, path
        assert headers.get("www-authenticate") == "Basic"
        assert get(port, path, ctx, ("prometheus", "wrong"))[0] == 401, path
        assert get(port, path, ctx, ("someone", PASSWORD))[0] == 401, path
    status, headers, body = get(port, "/metrics", ctx, ("prometheus", PASSWORD))
    assert status == 200 and b"razer_exporter_build_info" in body
    assert headers.get("x-frame-options") == "deny", "the web config's extra header"
    # The bcrypt check is cached after a success: a hundred scrapes cost little.
    t0 = time.monotonic()
    for _ in range(100):
        assert get(port, "/metrics", ctx, ("prometheus", PASSWORD))[0] == 200
    assert time.monotonic() - t0 < 5


def test_unauthenticated_probes_open_only_the_probes(certs, servers):
    port, ctx = servers["probes"].port, tls_context(certs)
    assert get(port, "/healthz", ctx)[0] == 200
    assert get(port, "/ready", ctx)[0] == 200
    for path in ["/", "/metrics", "/health"]:
        assert get(port, path, ctx)[0] == 401, path


def test_plain_http_to_a_tls_port_fails(servers):
    with pytest.raises((http.client.HTTPException, OSError)):
        get(servers["basic"].port, "/metrics", None)


def test_mutual_tls(certs, servers):
    port = servers["mutual"].port
    status, _, body = get(port, "/metrics", tls_context(certs, "client"))
    assert status == 200 and b"razer_exporter_build_info" in body
    for who in [None, "stranger", "expired"]:
        with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):
            get(port, "/metrics", tls_context(certs, who))


def test_prometheus_scrapes_over_tls_and_keeps_scraping_through_a_rotation(certs, servers, tmp_path):
    d = certs
    (tmp_path / "pw").write_text(PASSWORD)
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: basic
    scheme: https
    tls_config: {{ca_file: {d}/ca.pem}}
    basic_auth: {{username: prometheus, password_file: {tmp_path}/pw}}
    static_configs: [{{targets: ['127.0.0.1:{servers["basic"].port}']}}]
  - job_name: mutual
    scheme: https
    tls_config: {{ca_file: {d}/ca.pem, cert_file: {d}/client.pem, key_file: {d}/client.key}}
    static_configs: [{{targets: ['127.0.0.1:{servers["mutual"].port}']}}]
""")
    port = free_port()
    prom = Proc(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "prometheus.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=30)
        client = Client(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while {r["metric"]["job"] for r in client.query("up == 1")} != {"basic", "mutual"}:
            assert time.monotonic() < deadline, client.query("up")
            time.sleep(0.5)

        def served_serial():
            ctx = tls_context(d)
            with socket.create_connection(("127.0.0.1", servers["basic"].port)) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                    return t.getpeercert()["serialNumber"]
        before = served_serial()
        # Rotate: the new pair replaces the files in place, as a Secret update or certbot would.
        shutil.copy(d / "server2.key", d / "live.key.new")
        shutil.copy(d / "server2.pem", d / "live.pem.new")
        (d / "live.key.new").replace(d / "live.key")
        (d / "live.pem.new").replace(d / "live.pem")
        deadline = time.monotonic() + 20
        while served_serial() == before:
            assert time.monotonic() < deadline, "the new certificate was never served"
            time.sleep(0.5)
        time.sleep(3)
        # No scrape lost: up was 1 at every scrape since Prometheus started scraping.
        lost = client.query('count_over_time(up{job="basic"}[1m]) - sum_over_time(up{job="basic"}[1m])')
        assert lost and float(lost[0]["value"][1]) == 0, lost
    finally:
        prom.stop()
