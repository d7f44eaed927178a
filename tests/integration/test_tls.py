"""wss:// links (docs/TLS.md): the self-signed certificate of the node key,
pinned node ids in the URL fragment, CA verification, and ws:// and wss://
nodes in one mesh. Real node processes; certificates made with the openssl
command-line tool."""
import os
import stat
import subprocess

from meshlib import BIN, client_env, run, wait_for, wait_linked

WSS = ["--listen", "wss://127.0.0.1:0"]


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 0, "openssl %s: %s" % (" ".join(args), p.stderr.decode())
    return p.stdout


def cert_key_hex(path):
    """Hex of the Ed25519 public key in a PEM certificate."""
    spki = openssl("x509", "-in", str(path), "-noout", "-pubkey")
    p = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=spki,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    assert len(p.stdout) == 44, "not an Ed25519 key"
    return p.stdout[-32:].hex()


def pinned(node, node_id=None):
    return "%s/#%s" % (node.listen, node_id or node.id)


def refusals(node):
    c = node.status()["counters"]
    return c.get("tls_refusals", 0) + c.get("dial_failures", 0)


def has(rid):
    return lambda n: rid in n.ids()


def make_ca(d):
    """A CA and two certificates it signed: one naming 127.0.0.1, one naming
    only example.invalid. Returns the paths."""
    d.mkdir(exist_ok=True)
    openssl("req", "-x509", "-newkey", "ed25519", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=meshzero test CA", "-addext",
            "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=d)
    out = {"ca": d / "ca.pem"}
    for name, san in (("good", "IP:127.0.0.1"), ("wrongname", "DNS:example.invalid")):
        openssl("req", "-newkey", "ed25519", "-nodes", "-keyout", name + ".key", "-out",
                name + ".csr", "-subj", "/CN=" + name, cwd=d)
        (d / (name + ".ext")).write_text("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                                         % san)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", name + ".pem", "-extfile",
                name + ".ext", cwd=d)
        out[name] = (d / (name + ".pem"), d / (name + ".key"))
    return out


def test_self_signed_certificate_is_the_node_key(mesh):
    a = mesh.node("A", extra=WSS)
    assert a.listen.startswith("wss://127.0.0.1:")
    cert, key = a.data / "tls-cert.pem", a.data / "tls-key.pem"
    for f in (cert, key):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    assert cert_key_hex(cert) == a.id
    before = cert.read_bytes(), key.read_bytes()

    # A restart with the same data directory reuses the files.
    assert a.terminate() == 0
    a2 = mesh.node("A", extra=WSS)
    assert a2.id == a.id
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_pinned_wss_link_and_propagation(mesh):
    a = mesh.node("A", extra=WSS)
    b = mesh.node("B", peers=[pinned(a)])
    wait_linked([(a, b)])
    peer = [p for p in b.peers() if p["id"] == a.id][0]
    assert peer["listen"].startswith("wss://")
    b.register("tool-b", "tool", caps=["x"])
    a.register("agent-a", "agent", caps=["y"])
    wait_for(lambda: has("tool-b")(a), 5.0, what="tool-b on A")
    wait_for(lambda: has("agent-a")(b), 5.0, what="agent-a on B")


def test_wrong_pin_refused_and_listener_keeps_serving(mesh):
    a = mesh.node("A", extra=WSS)
    other = mesh.node("O")
    bad = mesh.node("D", peers=[pinned(a, other.id)])
    wait_for(lambda: refusals(bad) > 0, 10.0, what="D's refusal counted")
    wait_for(lambda: "does not match pinned id " + other.id in bad.stderr(), 5.0,
             what="pin mismatch in D's log")
    assert bad.peers() == []
    assert bad.id not in a.peer_ids()
    c = bad.status()["counters"]
    if "tls_refusals" in c:
        assert c["tls_refusals"] > 0

    # Without a pin, a self-signed certificate is not trusted either.
    nopin = mesh.node("N", peers=[a.listen])
    wait_for(lambda: "certificate not trusted" in nopin.stderr(), 10.0,
             what="untrusted certificate in N's log")
    assert nopin.peers() == []

    # The listener still serves honest peers, and the refused ones keep
    # re-dialing with backoff without ever linking.
    good = mesh.node("B", peers=[pinned(a)])
    wait_linked([(a, good)])
    n = refusals(bad)
    wait_for(lambda: refusals(bad) > n, 10.0, what="D re-dialing")
    assert bad.id not in a.peer_ids() and nopin.id not in a.peer_ids()
    assert a.status()["peers"] == 1


def test_mixed_ws_wss_mesh(mesh):
    """A(ws) -> B(wss, pinned) -> C(ws): a resource on C reaches A and back."""
    c = mesh.node("C")
    b = mesh.node("B", peers=[c], extra=WSS)
    a = mesh.node("A", peers=[pinned(b)])
    wait_linked([(a, b), (b, c)])
    assert a.id not in c.peer_ids()
    c.register("agent-c", "agent", caps=["far"])
    wait_for(lambda: has("agent-c")(a), 5.0, what="agent-c on A")
    a.register("agent-a", "agent")
    wait_for(lambda: has("agent-a")(c), 5.0, what="agent-a on C")


def test_ws_pin_in_url_accepted(mesh):
    """A pin on a ws:// URL parses (it is checked at the hello, not by TLS)."""
    a = mesh.node("A")
    b = mesh.node("B", peers=[pinned(a)])
    wait_linked([(a, b)])


def test_scheme_mismatch_fails_cleanly(mesh):
    """wss:// to a ws:// listener and ws:// to a wss:// one: no link, a
    reason in the log, both listeners keep serving."""
    plain = mesh.node("P")
    tls = mesh.node("T", extra=WSS)
    d = mesh.node("D", peers=["wss://%s/#%s" % (plain.listen[len("ws://"):], plain.id),
                              "ws://%s/#%s" % (tls.listen[len("wss://"):], tls.id)])
    wait_for(lambda: "TLS handshake failed" in d.stderr(), 10.0, what="wss->ws failure")
    wait_for(lambda: d.status()["counters"]["dial_failures"] >= 2, 10.0,
             what="both dials failed")
    assert d.peers() == []
    good = mesh.node("G", peers=[plain, pinned(tls)])
    wait_linked([(plain, good), (tls, good)])


def test_ca_verified_wss_without_pin(mesh, tmp_path):
    certs = make_ca(tmp_path / "pki")
    cert, key = certs["good"]
    b = mesh.node("B", extra=WSS + ["--tls-cert", str(cert), "--tls-key", str(key)])
    # The listener serves the given certificate, not a self-signed one.
    assert not (b.data / "tls-cert.pem").exists()
    a = mesh.node("A", peers=[b.listen], extra=["--tls-ca", str(certs["ca"])])
    wait_linked([(a, b)])
    b.register("svc-b", "service")
    wait_for(lambda: has("svc-b")(a), 5.0, what="svc-b on A")

    # Without the CA: refused.
    n = mesh.node("N", peers=[b.listen])
    wait_for(lambda: "certificate not trusted" in n.stderr(), 10.0, what="N refused")
    assert n.peers() == []
    # Pinning the node id does not fit a certificate with another key.
    p = mesh.node("P", peers=[pinned(b)], extra=["--tls-ca", str(certs["ca"])])
    wait_for(lambda: "does not match pinned id" in p.stderr(), 10.0, what="P refused")
    assert p.peers() == []


def test_ca_verified_certificate_must_name_the_host(mesh, tmp_path):
    certs = make_ca(tmp_path / "pki")
    cert, key = certs["wrongname"]
    b = mesh.node("B", extra=WSS + ["--tls-cert", str(cert), "--tls-key", str(key)])
    a = mesh.node("A", peers=[b.listen], extra=["--tls-ca", str(certs["ca"])])
    wait_for(lambda: "does not name host 127.0.0.1" in a.stderr(), 10.0,
             what="host name refusal")
    assert a.peers() == [] and b.peers() == []


def test_bad_tls_options(tmp_path):
    certs = make_ca(tmp_path / "pki")
    good_cert, good_key = certs["good"]
    _, other_key = certs["wrongname"]

    def node(*args):
        p = subprocess.run([BIN, "node", "--api", "none", "--data", str(tmp_path / "d"),
                            "--listen", "wss://127.0.0.1:0"] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=30, env=client_env())
        assert p.stdout == ""
        return p

    p = node("--tls-cert", str(good_cert))
    assert p.returncode == 2 and "give both files" in p.stderr
    p = node("--tls-cert", str(good_cert), "--tls-key", str(other_key))
    assert p.returncode == 2 and "does not belong to certificate" in p.stderr
    p = node("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(good_key))
    assert p.returncode == 2 and "missing.pem" in p.stderr
    p = node("--tls-cert", str(good_cert), "--tls-key", str(good_key), "--tls-ca",
             str(good_key))
    assert p.returncode == 2 and "holds no PEM certificate" in p.stderr
    p = node("--peer", "wss://127.0.0.1:1/#1234")
    assert p.returncode == 2 and "node id" in p.stderr
    p = subprocess.run([BIN, "node", "--api", "wss://127.0.0.1:0", "--data",
                        str(tmp_path / "d")], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30, env=client_env())
    assert p.returncode == 2 and "ws:// only" in p.stderr


def test_loose_tls_key_mode_refused(mesh):
    a = mesh.node("A", extra=WSS)
    assert a.terminate() == 0
    os.chmod(a.data / "tls-key.pem", 0o644)
    p = subprocess.run([BIN, "node", "--api", "none", "--data", str(a.data)] + WSS,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
                       env=client_env())
    assert p.returncode == 1 and "chmod 600" in p.stderr


def test_new_identity_regenerates_certificate(mesh):
    a = mesh.node("A", extra=WSS)
    assert a.terminate() == 0
    os.unlink(a.data / "identity.key")
    a2 = mesh.node("A", extra=WSS)
    assert a2.id != a.id
    assert cert_key_hex(a2.data / "tls-cert.pem") == a2.id
    assert run(["id", "--data", str(a2.data)]).stdout.split()[0] == a2.id
