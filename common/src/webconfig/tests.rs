//! Tests of the module as a whole: loading with real certificates (made here with rcgen),
//! TLS handshakes through the built `ServerConfig`, reloads, and the comparison with
//! `promtool check web-config`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

use super::*;

// ---------------------------------------------------------------------------------------
// Certificates and handshakes

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate with its key, as PEM and as DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut r = rustls::RootCertStore::empty();
        r.add(self.cert.der().clone()).unwrap();
        r
    }

    fn issue_with(
        &self,
        sans: Vec<SanType>,
        client: bool,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> Leaf {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "leaf");
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    fn server(&self) -> Leaf {
        self.issue_with(
            vec![SanType::DnsName("localhost".try_into().unwrap())],
            false,
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
    }

    fn client(&self, sans: Vec<SanType>) -> Leaf {
        self.issue_with(sans, true, &rcgen::PKCS_ECDSA_P256_SHA256)
    }
}

fn dns(s: &str) -> SanType {
    SanType::DnsName(s.try_into().unwrap())
}

/// What a completed handshake agreed on.
#[derive(Debug)]
struct Agreed {
    version: rustls::ProtocolVersion,
    suite: rustls::CipherSuite,
    group: rustls::NamedGroup,
    alpn: Option<Vec<u8>>,
    server_cert: Vec<u8>,
    client_cert_seen: bool,
}

fn client_config(
    server_ca: &Ca,
    client: Option<&Leaf>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    provider: rustls::crypto::CryptoProvider,
) -> Arc<ClientConfig> {
    let b = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(server_ca.roots());
    let mut cfg = match client {
        Some(l) => b
            .with_client_auth_cert(l.chain.clone(), l.key.clone_key())
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

fn default_client(server_ca: &Ca, client: Option<&Leaf>) -> Arc<ClientConfig> {
    client_config(
        server_ca,
        client,
        rustls::ALL_VERSIONS,
        ring_provider::default_provider(),
    )
}

/// Run a handshake in memory; the error says which side gave up and why.
fn handshake(server: &Arc<ServerConfig>, client: Arc<ClientConfig>) -> Result<Agreed, String> {
    let mut c = ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = ServerConnection::new(Arc::clone(server)).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        let server_err = s.process_new_packets().err();
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        let client_err = c.process_new_packets().err();
        if let Some(e) = server_err {
            return Err(format!("server: {e}"));
        }
        if let Some(e) = client_err {
            return Err(format!("client: {e}"));
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(Agreed {
                version: s.protocol_version().unwrap(),
                suite: s.negotiated_cipher_suite().unwrap().suite(),
                group: s.negotiated_key_exchange_group().unwrap().name(),
                alpn: s.alpn_protocol().map(|a| a.to_vec()),
                server_cert: c.peer_certificates().unwrap()[0].to_vec(),
                client_cert_seen: s.peer_certificates().is_some(),
            });
        }
    }
    Err("handshake did not finish".into())
}

/// A folder with a web config and the files it names.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The server certificate and key as server.crt and server.key.
    fn server_files(&self, leaf: &Leaf) {
        self.write("server.crt", &leaf.cert_pem);
        self.write("server.key", &leaf.key_pem);
    }

    fn config(&self, text: &str) -> PathBuf {
        self.write("web.yml", text)
    }

    fn load(&self, text: &str) -> anyhow::Result<WebConfig> {
        WebConfig::load(self.config(text))
    }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

fn tls_of(cfg: &WebConfig) -> &Arc<ServerConfig> {
    cfg.tls().expect("TLS is on")
}

// ---------------------------------------------------------------------------------------
// Loading and TLS

#[test]
fn plain_config_has_no_tls() {
    let d = Dir::new();
    let cfg = d.load("basic_auth_users: {}\n").unwrap();
    assert!(cfg.tls().is_none());
    assert!(!cfg.auth().enabled());
    assert!(cfg.headers().is_empty());
    assert!(cfg.http2_requested());
}

#[test]
fn tls_handshake_with_defaults() {
    let ca = Ca::new("server ca");
    let leaf = ca.server();
    let d = Dir::new();
    d.server_files(&leaf);
    let cfg = d.load(TLS).unwrap();
    let a = handshake(tls_of(&cfg), default_client(&ca, None)).unwrap();
    assert_eq!(a.version, rustls::ProtocolVersion::TLSv1_3);
    assert_eq!(a.alpn.as_deref(), Some(&b"http/1.1"[..]), "never h2");
    assert_eq!(a.server_cert, leaf.chain[0].to_vec());
    assert!(!a.client_cert_seen);
    // TLS 1.2 works too by default.
    let c = client_config(
        &ca,
        None,
        &[&rustls::version::TLS12],
        ring_provider::default_provider(),
    );
    let a = handshake(tls_of(&cfg), c).unwrap();
    assert_eq!(a.version, rustls::ProtocolVersion::TLSv1_2);
}

#[test]
fn tls_versions_suites_and_curves_are_applied() {
    let ca = Ca::new("server ca");
    let d = Dir::new();
    d.server_files(&ca.server());
    let tls12 = |provider| client_config(&ca, None, &[&rustls::version::TLS12], provider);

    let cfg = d.load(&format!("{TLS}  min_version: TLS13\n")).unwrap();
    let e = handshake(tls_of(&cfg), tls12(ring_provider::default_provider())).unwrap_err();
    assert!(e.contains("server:"), "{e}");

    let cfg = d
        .load(&format!(
            "{TLS}  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n"
        ))
        .unwrap();
    let a = handshake(tls_of(&cfg), default_client(&ca, None)).unwrap();
    assert_eq!(a.version, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(
        a.suite,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    );

    // The server's order wins with prefer_server_cipher_suites (the default)...
    let two = "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n";
    let cfg = d.load(&format!("{TLS}{two}")).unwrap();
    let a = handshake(tls_of(&cfg), default_client(&ca, None)).unwrap();
    assert_eq!(
        a.suite,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    // ...and the client's (AES-256 first in rustls's list) without it.
    let cfg = d
        .load(&format!("{TLS}{two}  prefer_server_cipher_suites: false\n"))
        .unwrap();
    let a = handshake(tls_of(&cfg), default_client(&ca, None)).unwrap();
    assert_eq!(
        a.suite,
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    );

    let cfg = d
        .load(&format!("{TLS}  curve_preferences: [CurveP384]\n"))
        .unwrap();
    let a = handshake(tls_of(&cfg), default_client(&ca, None)).unwrap();
    assert_eq!(a.group, rustls::NamedGroup::secp384r1);
    let x25519_only = rustls::crypto::CryptoProvider {
        kx_groups: vec![ring_provider::kx_group::X25519],
        ..ring_provider::default_provider()
    };
    let c = client_config(&ca, None, rustls::ALL_VERSIONS, x25519_only);
    assert!(handshake(tls_of(&cfg), c).is_err());

    // Only a TLS 1.3 suite named: TLS 1.3 alone is offered.
    let cfg = d
        .load(&format!("{TLS}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"))
        .unwrap();
    assert!(handshake(tls_of(&cfg), default_client(&ca, None)).is_ok());
    assert!(handshake(tls_of(&cfg), tls12(ring_provider::default_provider())).is_err());
}

#[test]
fn inline_cert_and_key() {
    let ca = Ca::new("server ca");
    let leaf = ca.server();
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let d = Dir::new();
    let cfg = d
        .load(&format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}",
            indent(&leaf.cert_pem),
            indent(&leaf.key_pem)
        ))
        .unwrap();
    let a = handshake(tls_of(&cfg), default_client(&ca, None)).unwrap();
    assert_eq!(a.server_cert, leaf.chain[0].to_vec());
}

#[test]
fn certificate_problems_are_named() {
    let ca = Ca::new("server ca");
    let (one, two) = (ca.server(), ca.server());
    let d = Dir::new();
    d.write("server.crt", &one.cert_pem);
    d.write("server.key", &two.key_pem);
    let e = format!("{:#}", d.load(TLS).unwrap_err());
    assert!(e.contains("web config "), "names the file: {e}");
    assert!(
        e.contains("key_file (") && e.contains("server.key) does not belong to cert_file ("),
        "{e}"
    );
    assert!(!e.contains("PRIVATE KEY"), "{e}");

    d.write("server.key", "not a key\n");
    let e = format!("{:#}", d.load(TLS).unwrap_err());
    assert!(e.contains("no private key found"), "{e}");

    d.write("server.key", &one.key_pem);
    d.write(
        "server.crt",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let e = format!("{:#}", d.load(TLS).unwrap_err());
    assert!(e.contains("tls_server_config.cert_file ("), "{e}");

    d.write("server.crt", "");
    let e = format!("{:#}", d.load(TLS).unwrap_err());
    assert!(e.contains("no certificate found"), "{e}");

    std::fs::remove_file(d.path("server.crt")).unwrap();
    let e = format!("{:#}", d.load(TLS).unwrap_err());
    assert!(
        e.contains("cert_file: cannot read") && e.contains("server.crt"),
        "{e}"
    );

    d.write("server.crt", &one.cert_pem);
    d.write("ca.crt", "nothing here\n");
    let e = format!(
        "{:#}",
        d.load(&format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        ))
        .unwrap_err()
    );
    assert!(
        e.contains("client_ca_file (") && e.contains("no certificate found"),
        "{e}"
    );

    let e = format!("{:#}", WebConfig::load(d.path("absent.yml")).unwrap_err());
    assert!(
        e.contains("cannot read web config") && e.contains("absent.yml"),
        "{e}"
    );
}

/// Each client_auth_type against a client with no certificate, one from the trusted client
/// CA, and a self-made one.
#[test]
fn client_auth_types() {
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let stranger_ca = Ca::new("stranger");
    let trusted = client_ca.client(vec![dns("scraper.example")]);
    let stranger = stranger_ca.client(vec![dns("scraper.example")]);
    let d = Dir::new();
    d.server_files(&server_ca.server());
    d.write("ca.crt", &client_ca.pem());
    // (type, with CA, [no cert, trusted, stranger] accepted, certificate seen when sent)
    let table = [
        ("NoClientCert", false, [true, true, true], false),
        ("RequestClientCert", false, [true, true, true], true),
        ("RequireAnyClientCert", false, [false, true, true], true),
        ("RequireAnyClientCert", true, [false, true, true], true),
        ("VerifyClientCertIfGiven", true, [true, true, false], true),
        (
            "RequireAndVerifyClientCert",
            true,
            [false, true, false],
            true,
        ),
    ];
    for (kind, with_ca, expect, seen) in table {
        let ca_line = if with_ca {
            "  client_ca_file: ca.crt\n"
        } else {
            ""
        };
        let cfg = d
            .load(&format!("{TLS}  client_auth_type: {kind}\n{ca_line}"))
            .unwrap();
        for (who, client, ok) in [
            ("no certificate", None, expect[0]),
            ("trusted", Some(&trusted), expect[1]),
            ("stranger", Some(&stranger), expect[2]),
        ] {
            for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
                let c = client_config(
                    &server_ca,
                    client,
                    &[version],
                    ring_provider::default_provider(),
                );
                let r = handshake(tls_of(&cfg), c);
                assert_eq!(r.is_ok(), ok, "{kind} with {who} over {version:?}: {r:?}");
                if let Ok(a) = r {
                    assert_eq!(a.client_cert_seen, seen && client.is_some(), "{kind} {who}");
                }
            }
        }
    }
}

#[test]
fn alpn_and_client_key_usage() {
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let d = Dir::new();
    d.server_files(&server_ca.server());
    d.write("ca.crt", &client_ca.pem());
    let cfg = d
        .load(&format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        ))
        .unwrap();
    // A client that offers h2 alone finds no common protocol.
    let mut c =
        (*default_client(&server_ca, Some(&client_ca.client(vec![dns("a.example")])))).clone();
    c.alpn_protocols = vec![b"h2".to_vec()];
    let e = handshake(tls_of(&cfg), Arc::new(c)).unwrap_err();
    assert!(e.contains("server:"), "{e}");
    // A certificate from the client CA that is only good for serving is refused.
    let server_only = client_ca.issue_with(
        vec![dns("a.example")],
        false,
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    assert!(handshake(tls_of(&cfg), default_client(&server_ca, Some(&server_only))).is_err());
    let client = client_ca.client(vec![dns("a.example")]);
    assert!(handshake(tls_of(&cfg), default_client(&server_ca, Some(&client))).is_ok());
}

#[test]
fn client_allowed_sans() {
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let d = Dir::new();
    d.server_files(&server_ca.server());
    d.write("ca.crt", &client_ca.pem());
    let cfg = d
        .load(&format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  client_allowed_sans: [scraper.example, 10.1.2.3, 'ops@example.org', 'spiffe://example/prom', '2001:db8::1']\n"
        ))
        .unwrap();
    let ok = |sans: Vec<SanType>| {
        let c = default_client(&server_ca, Some(&client_ca.client(sans)));
        handshake(tls_of(&cfg), c)
    };
    assert!(ok(vec![dns("other.example"), dns("scraper.example")]).is_ok());
    assert!(ok(vec![SanType::IpAddress("10.1.2.3".parse().unwrap())]).is_ok());
    assert!(ok(vec![SanType::IpAddress("2001:db8:0:0::1".parse().unwrap())]).is_ok());
    assert!(ok(vec![SanType::Rfc822Name(
        "ops@example.org".try_into().unwrap()
    )])
    .is_ok());
    assert!(ok(vec![SanType::URI(
        "spiffe://example/prom".try_into().unwrap()
    )])
    .is_ok());
    let e = ok(vec![dns("other.example")]).unwrap_err();
    assert!(e.contains("server:"), "{e}");
    assert!(ok(vec![dns("Scraper.example")]).is_err(), "exact match");
    assert!(ok(vec![SanType::IpAddress("10.1.2.4".parse().unwrap())]).is_err());

    // RequireAnyClientCert: SANs of an unverified certificate, as in Go.
    let cfg = d
        .load(&format!(
            "{TLS}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [scraper.example]\n"
        ))
        .unwrap();
    let stranger = Ca::new("stranger");
    let c = default_client(
        &server_ca,
        Some(&stranger.client(vec![dns("scraper.example")])),
    );
    assert!(handshake(tls_of(&cfg), c).is_ok());
    let c = default_client(&server_ca, Some(&stranger.client(vec![dns("x.example")])));
    assert!(handshake(tls_of(&cfg), c).is_err());
}

#[test]
fn san_strings_match_go() {
    let ca = Ca::new("ca");
    let leaf = ca.client(vec![
        dns("a.example"),
        SanType::IpAddress("::ffff:10.0.0.1".parse().unwrap()),
        SanType::IpAddress("2001:0db8:0000::0001".parse().unwrap()),
        SanType::IpAddress("192.0.2.7".parse().unwrap()),
        SanType::URI("https://x.example/p?q=1".try_into().unwrap()),
    ]);
    assert_eq!(
        tls::sans(&leaf.chain[0]).unwrap(),
        [
            "a.example",
            "10.0.0.1",
            "2001:db8::1",
            "192.0.2.7",
            "https://x.example/p?q=1"
        ]
    );
}

#[test]
fn headers_are_exposed() {
    let d = Dir::new();
    let cfg = d
        .load("http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=3600\n")
        .unwrap();
    assert_eq!(cfg.headers().get("x-frame-options").unwrap(), "deny");
    assert_eq!(
        cfg.headers().get("strict-transport-security").unwrap(),
        "max-age=3600"
    );
    assert_eq!(cfg.headers().len(), 2);
    assert!(!cfg.http2_requested());
}

#[test]
fn basic_auth_through_load() {
    let d = Dir::new();
    let hash = bcrypt::hash("pw", 4).unwrap();
    let cfg = d
        .load(&format!("basic_auth_users:\n  prom: '{hash}'\n"))
        .unwrap();
    assert!(cfg.auth().enabled());
    let good = hyper::header::HeaderValue::from_static("Basic cHJvbTpwdw=="); // prom:pw
    let bad = hyper::header::HeaderValue::from_static("Basic cHJvbTpQVw=="); // prom:PW
    assert_eq!(cfg.auth().check(Some(&good)), Decision::Allowed);
    assert_eq!(cfg.auth().check(Some(&bad)), Decision::Unauthorized);
    assert_eq!(cfg.auth().check(None), Decision::Unauthorized);
    assert!(!format!("{cfg:?}").contains(&hash[7..]), "{cfg:?}");
}

// ---------------------------------------------------------------------------------------
// Reloads

fn users_file(users: &[(&str, &str)]) -> String {
    let mut s = String::from("basic_auth_users:\n");
    for (u, p) in users {
        s.push_str(&format!("  {u}: '{}'\n", bcrypt::hash(p, 4).unwrap()));
    }
    s
}

fn basic(user: &str, pass: &str) -> hyper::header::HeaderValue {
    use base64::Engine as _;
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    hyper::header::HeaderValue::from_str(&format!("Basic {enc}")).unwrap()
}

#[test]
fn reload_applies_a_valid_change_and_keeps_the_last_good_one() {
    let d = Dir::new();
    let path = d.config(&users_file(&[("alice", "one")]));
    let w = WebConfigWatcher::new(&path).unwrap();
    assert!(!w.tls_enabled());
    assert_eq!(w.path(), path);
    assert_eq!(w.poll(), Reload::Unchanged);
    let check = |u, p| w.current().auth().check(Some(&basic(u, p)));
    assert_eq!(check("alice", "one"), Decision::Allowed);

    d.config(&users_file(&[("alice", "two")]));
    assert_eq!(w.poll(), Reload::Applied);
    assert_eq!(
        check("alice", "one"),
        Decision::Unauthorized,
        "old password, old cache"
    );
    assert_eq!(check("alice", "two"), Decision::Allowed);

    // Broken: the last good configuration stays, the warning is logged once.
    d.config("basic_auth_users:\n  alice: plaintext\n");
    let Reload::Rejected(e) = w.poll() else {
        panic!("accepted a broken file")
    };
    assert!(
        e.contains("the hash of user \"alice\" is not a bcrypt hash"),
        "{e}"
    );
    assert!(!e.contains("plaintext"), "{e}");
    assert_eq!(check("alice", "two"), Decision::Allowed);
    assert_eq!(w.warnings_logged(), 1);
    assert_eq!(w.poll(), Reload::Unchanged);
    // Another file with the same error: not logged again.
    d.config("basic_auth_users:\n  alice: plaintexT\n");
    assert!(matches!(w.poll(), Reload::Rejected(_)));
    assert_eq!(w.warnings_logged(), 1);
    // A different error is.
    d.config("basic_auth_users: [\n");
    assert!(matches!(w.poll(), Reload::Rejected(_)));
    assert_eq!(w.warnings_logged(), 2);
    std::fs::remove_file(&path).unwrap();
    let Reload::Rejected(e) = w.poll() else {
        panic!("a missing file was accepted")
    };
    assert!(e.contains("cannot read web config"), "{e}");
    assert_eq!(w.warnings_logged(), 3);
    assert_eq!(check("alice", "two"), Decision::Allowed);

    // Fixed: applied; a later error is logged again even if it was seen before.
    d.config("http_server_config:\n  headers:\n    X-Frame-Options: deny\n");
    assert_eq!(w.poll(), Reload::Applied);
    assert_eq!(
        check("alice", "two"),
        Decision::Allowed,
        "no users any more"
    );
    assert_eq!(w.current().headers().len(), 1);
    d.config("basic_auth_users: [\n");
    assert!(matches!(w.poll(), Reload::Rejected(_)));
    assert_eq!(w.warnings_logged(), 4);
}

#[test]
fn reload_keeps_the_auth_cache_only_for_the_same_users() {
    let d = Dir::new();
    let text = users_file(&[("alice", "one")]);
    let path = d.config(&text);
    let w = WebConfigWatcher::new(&path).unwrap();
    let before = Arc::clone(w.current().auth());
    assert_eq!(
        before.check(Some(&basic("alice", "one"))),
        Decision::Allowed
    );
    d.config(&format!(
        "{text}http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
    ));
    assert_eq!(w.poll(), Reload::Applied);
    assert!(
        Arc::ptr_eq(&before, w.current().auth()),
        "same users: cache kept"
    );
    assert_eq!(w.current().auth().cached_entries(), 1);
    d.config(&users_file(&[("alice", "one")]));
    assert_eq!(w.poll(), Reload::Applied);
    assert!(
        !Arc::ptr_eq(&before, w.current().auth()),
        "new hash: new cache"
    );
    assert_eq!(w.current().auth().cached_entries(), 0);
}

#[test]
fn certificate_rotation_is_picked_up() {
    let ca = Ca::new("server ca");
    let (old, new) = (ca.server(), ca.server());
    let d = Dir::new();
    d.server_files(&old);
    let w = WebConfigWatcher::new(d.config(TLS)).unwrap();
    assert!(w.tls_enabled());
    let served = |w: &WebConfigWatcher| {
        handshake(tls_of(&w.current()), default_client(&ca, None))
            .unwrap()
            .server_cert
    };
    assert_eq!(served(&w), old.chain[0].to_vec());

    // The certificate first: it no longer matches the key, so the old pair stays.
    d.write("server.crt", &new.cert_pem);
    let Reload::Rejected(e) = w.poll() else {
        panic!("a mismatched pair was accepted")
    };
    assert!(e.contains("does not belong to"), "{e}");
    assert_eq!(served(&w), old.chain[0].to_vec());
    // Then the key.
    d.write("server.key", &new.key_pem);
    assert_eq!(w.poll(), Reload::Applied);
    assert_eq!(served(&w), new.chain[0].to_vec());

    // A swap through a symlink, as Kubernetes does with mounted secrets.
    let third = ca.server();
    d.write("v2/server.crt", &third.cert_pem);
    d.write("v2/server.key", &third.key_pem);
    std::os::unix::fs::symlink(d.path("v2"), d.path("current")).unwrap();
    d.config(
        "tls_server_config:\n  cert_file: current/server.crt\n  key_file: current/server.key\n",
    );
    assert_eq!(w.poll(), Reload::Applied);
    assert_eq!(served(&w), third.chain[0].to_vec());
    let fourth = ca.server();
    d.write("v3/server.crt", &fourth.cert_pem);
    d.write("v3/server.key", &fourth.key_pem);
    std::fs::remove_file(d.path("current")).unwrap();
    std::os::unix::fs::symlink(d.path("v3"), d.path("current")).unwrap();
    assert_eq!(w.poll(), Reload::Applied);
    assert_eq!(served(&w), fourth.chain[0].to_vec());
}

#[test]
fn reload_cannot_switch_tls() {
    let ca = Ca::new("server ca");
    let d = Dir::new();
    d.server_files(&ca.server());
    let w = WebConfigWatcher::new(d.config(TLS)).unwrap();
    d.config("basic_auth_users: {}\n");
    let Reload::Rejected(e) = w.poll() else {
        panic!("TLS was switched off")
    };
    assert!(e.contains("turns TLS off, which takes a restart"), "{e}");
    assert!(w.current().tls().is_some());
    assert_eq!(w.warnings_logged(), 1);

    let w = WebConfigWatcher::new(d.config("")).unwrap();
    assert!(!w.tls_enabled());
    d.config(TLS);
    let Reload::Rejected(e) = w.poll() else {
        panic!("TLS was switched on")
    };
    assert!(e.contains("turns TLS on"), "{e}");
    assert!(w.current().tls().is_none());
}

#[test]
fn a_broken_file_at_start_is_an_error() {
    let d = Dir::new();
    let e = WebConfigWatcher::start(
        d.config("tls_server_config:\n  min_version: TLS11\n"),
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("TLS11 is not supported"), "{e:#}");
}

#[test]
fn the_thread_polls_and_stops() {
    let d = Dir::new();
    let path = d.config("");
    let w = WebConfigWatcher::start(&path, Duration::from_millis(20)).unwrap();
    assert!(w.current().headers().is_empty());
    d.config("http_server_config:\n  headers:\n    X-Frame-Options: deny\n");
    let start = Instant::now();
    while w.current().headers().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "change not seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let start = Instant::now();
    drop(w);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// Agreement with promtool

/// How `promtool check web-config` and [`WebConfig::load`] are expected to judge a file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Both accept.
    Valid,
    /// Both refuse.
    Invalid,
    /// A setting rustls cannot honour: promtool accepts it, we refuse it (docs/web-config.md,
    /// "Refused").
    RustlsCannot,
    /// A mistake Go lets through and we catch: promtool accepts, we refuse (same page).
    StricterHere,
    /// A key of newer exporter-toolkit releases: we accept it; promtool accepts it too or,
    /// when it predates the key, calls it unknown.
    NewerToolkit,
    /// A section of newer toolkit releases we do not implement: we refuse it; promtool
    /// accepts it or calls it unknown.
    NotImplemented,
}

fn promtool() -> Option<PathBuf> {
    let out = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .ok()?;
    out.status.success().then(|| PathBuf::from("promtool"))
}

fn openssl(args: &[&str], dir: &Path) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn agrees_with_promtool() {
    let Some(promtool) = promtool() else {
        eprintln!("SKIPPED agrees_with_promtool: promtool is not installed");
        return;
    };
    let ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let d = Dir::new();
    d.server_files(&ca.server());
    let other = ca.server();
    d.write("other.key", &other.key_pem);
    d.write("sub/server.crt", &other.cert_pem);
    d.write("sub/server.key", &other.key_pem);
    d.write("ca.crt", &client_ca.pem());
    d.write("garbage.pem", "not a certificate\n");
    let both = ca.server();
    d.write("both.pem", &format!("{}{}", both.key_pem, both.cert_pem));
    let subj = "/CN=localhost";
    let has_openssl = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:1024",
            "-nodes",
            "-keyout",
            "rsa1024.key",
            "-out",
            "rsa1024.crt",
            "-days",
            "2",
            "-subj",
            subj,
        ],
        d.dir.path(),
    ) && openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-521",
            "-nodes",
            "-keyout",
            "p521.key",
            "-out",
            "p521.crt",
            "-days",
            "2",
            "-subj",
            subj,
        ],
        d.dir.path(),
    );
    let hash = |v: &str| {
        "$2y$10$xfu6ned.mGTGP98njkFGquzoCwpCs4bV3PJ7bMfTPDNSmehmjW5/i".replacen("2y", v, 1)
    };
    let indent = |s: &str| s.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let tls_with = |extra: &str| format!("{TLS}{extra}");

    use Expect::*;
    let mut cases: Vec<(&str, String, Expect)> = vec![
        ("empty file", String::new(), Valid),
        ("only a comment", "# nothing\n".into(), Valid),
        ("null sections", "tls_server_config:\nbasic_auth_users:\n".into(), Valid),
        ("empty TLS section", "tls_server_config: {}\n".into(), Valid),
        ("TLS", TLS.into(), Valid),
        ("TLS in a subfolder", "tls_server_config:\n  cert_file: sub/server.crt\n  key_file: sub/server.key\n".into(), Valid),
        (
            "every TLS setting",
            tls_with("  min_version: TLS12\n  max_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256]\n  curve_preferences: [X25519, CurveP256, CurveP384]\n  prefer_server_cipher_suites: false\n"),
            Valid,
        ),
        ("certificate and key in one file", "tls_server_config:\n  cert_file: both.pem\n  key_file: both.pem\n".into(), Valid),
        ("a TLS 1.3 suite name", tls_with("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"), Valid),
        ("TLS 1.3 only", tls_with("  min_version: TLS13\n"), Valid),
        ("YAML 1.1 booleans", tls_with("  prefer_server_cipher_suites: yes\nhttp_server_config:\n  http2: off\n"), Valid),
        ("versions without a certificate", "tls_server_config:\n  min_version: TLS12\n".into(), Valid),
        ("RequestClientCert", tls_with("  client_auth_type: RequestClientCert\n"), Valid),
        ("RequireAnyClientCert", tls_with("  client_auth_type: RequireAnyClientCert\n"), Valid),
        ("RequireClientCert, the old name", tls_with("  client_auth_type: RequireClientCert\n"), Valid),
        ("VerifyClientCertIfGiven", tls_with("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"), Valid),
        ("RequireAndVerifyClientCert", tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"), Valid),
        (
            "every header",
            "http_server_config:\n  http2: true\n  headers:\n    Content-Security-Policy: default-src 'self'\n    Strict-Transport-Security: ''\n    X-Content-Type-Options: nosniff\n    X-Frame-Options: sameorigin\n    X-XSS-Protection: '1'\n".into(),
            Valid,
        ),
        ("bcrypt $2y$", format!("basic_auth_users:\n  alice: '{}'\n", hash("2y")), Valid),
        ("bcrypt $2a$ and $2b$", format!("basic_auth_users:\n  a: '{}'\n  b: '{}'\n", hash("2a"), hash("2b")), Valid),
        ("an empty user name", format!("basic_auth_users:\n  '': '{}'\n", hash("2y")), Valid),
        ("no users", "basic_auth_users: {}\n".into(), Valid),
        // Both refuse.
        ("a list", "- a\n".into(), Invalid),
        ("a scalar", "a\n".into(), Invalid),
        ("unknown top-level key", "foo: 1\n".into(), Invalid),
        ("unknown TLS key", tls_with("  bogus: 1\n"), Invalid),
        ("unknown HTTP key", "http_server_config:\n  http3: true\n".into(), Invalid),
        ("not a boolean", "http_server_config:\n  http2: maybe\n".into(), Invalid),
        ("certificate without key", "tls_server_config:\n  cert_file: server.crt\n".into(), Invalid),
        ("key without certificate", "tls_server_config:\n  key_file: server.key\n".into(), Invalid),
        ("client auth without certificate", "tls_server_config:\n  client_auth_type: RequireAnyClientCert\n".into(), Invalid),
        ("mismatched key", "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n".into(), Invalid),
        ("missing certificate file", "tls_server_config:\n  cert_file: absent.crt\n  key_file: server.key\n".into(), Invalid),
        ("garbage certificate", "tls_server_config:\n  cert_file: garbage.pem\n  key_file: server.key\n".into(), Invalid),
        ("garbage key", "tls_server_config:\n  cert_file: server.crt\n  key_file: garbage.pem\n".into(), Invalid),
        ("client CA without client auth", tls_with("  client_ca_file: ca.crt\n"), Invalid),
        ("missing client CA file", tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: absent.crt\n"), Invalid),
        ("unknown client auth type", tls_with("  client_auth_type: requireandverifyclientcert\n"), Invalid),
        ("unknown TLS version", tls_with("  min_version: TLS14\n"), Invalid),
        ("lower-case TLS version", tls_with("  max_version: tls13\n"), Invalid),
        ("3DES suite", tls_with("  cipher_suites: [TLS_RSA_WITH_3DES_EDE_CBC_SHA]\n"), Invalid),
        ("CBC-SHA256 suite", tls_with("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256]\n"), Invalid),
        ("suite name without _SHA256", tls_with("  cipher_suites: [TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]\n"), Invalid),
        ("unknown curve", tls_with("  curve_preferences: [P256]\n"), Invalid),
        ("unknown header", "http_server_config:\n  headers:\n    Foo: bar\n".into(), Invalid),
        ("lower-case header", "http_server_config:\n  headers:\n    x-frame-options: deny\n".into(), Invalid),
        ("bad X-Frame-Options", "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n".into(), Invalid),
        ("blank X-Frame-Options", "http_server_config:\n  headers:\n    X-Frame-Options: ''\n".into(), Invalid),
        ("bad X-Content-Type-Options", "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n".into(), Invalid),
        ("repeated header", "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Frame-Options: deny\n".into(), Invalid),
        ("repeated user", format!("basic_auth_users:\n  a: '{0}'\n  a: '{0}'\n", hash("2y")), Invalid),
        ("plain-text password", "basic_auth_users:\n  alice: hunter2\n".into(), Invalid),
        ("no hash", "basic_auth_users:\n  alice:\n".into(), Invalid),
        ("bcrypt cost 3", format!("basic_auth_users:\n  alice: '{}'\n", hash("2y").replacen("$10$", "$03$", 1)), Invalid),
        ("bcrypt version 3", format!("basic_auth_users:\n  alice: '{}'\n", hash("3y")), Invalid),
        ("users as a list", format!("basic_auth_users: ['{}']\n", hash("2y")), Invalid),
        // rustls cannot.
        ("min_version TLS10", tls_with("  min_version: TLS10\n"), RustlsCannot),
        ("min_version TLS11", tls_with("  min_version: TLS11\n"), RustlsCannot),
        ("max_version TLS11", tls_with("  min_version: TLS10\n  max_version: TLS11\n"), RustlsCannot),
        ("TLS10 without a certificate", "tls_server_config:\n  min_version: TLS10\n".into(), RustlsCannot),
        ("CBC suite", tls_with("  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA]\n"), RustlsCannot),
        ("RSA CBC suite", tls_with("  cipher_suites: [TLS_RSA_WITH_AES_256_CBC_SHA]\n"), RustlsCannot),
        ("RSA key exchange suite", tls_with("  cipher_suites: [TLS_RSA_WITH_AES_128_GCM_SHA256]\n"), RustlsCannot),
        ("curve P-521", tls_with("  curve_preferences: [CurveP521, X25519]\n"), RustlsCannot),
        // Caught here, let through by Go.
        ("VerifyClientCertIfGiven without CA", tls_with("  client_auth_type: VerifyClientCertIfGiven\n"), StricterHere),
        ("RequireAndVerifyClientCert without CA", tls_with("  client_auth_type: RequireAndVerifyClientCert\n"), StricterHere),
        ("client CA without a certificate", tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: garbage.pem\n"), StricterHere),
        ("min_version above max_version", tls_with("  min_version: TLS13\n  max_version: TLS12\n"), StricterHere),
        ("a second YAML document", "basic_auth_users: {}\n---\nfoo: 1\n".into(), StricterHere),
        ("bcrypt hash with bad characters", format!("basic_auth_users:\n  alice: '{}'\n", hash("2y").replacen("xfu6", "x!u6", 1)), StricterHere),
        ("bcrypt-length $1$ hash", format!("basic_auth_users:\n  alice: '{}'\n", hash("2y").replacen("$2y$", "$1$", 1) + "x"), StricterHere),
        // Newer toolkit keys.
        (
            "inline certificate and key",
            format!("tls_server_config:\n  cert: |\n{}  key: |\n{}", indent(&std::fs::read_to_string(d.path("server.crt")).unwrap()), indent(&std::fs::read_to_string(d.path("server.key")).unwrap())),
            NewerToolkit,
        ),
        (
            "inline client CA",
            tls_with(&format!("  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n{}", indent(&client_ca.pem()))),
            NewerToolkit,
        ),
        (
            "client_allowed_sans",
            tls_with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  client_allowed_sans: [scraper.example]\n"),
            NewerToolkit,
        ),
        ("rate_limit", "rate_limit:\n  interval: 1s\n  burst: 20\n".into(), NotImplemented),
    ];
    if has_openssl {
        cases.push((
            "RSA 1024-bit key",
            "tls_server_config:\n  cert_file: rsa1024.crt\n  key_file: rsa1024.key\n".into(),
            RustlsCannot,
        ));
        cases.push((
            "ECDSA P-521 key",
            "tls_server_config:\n  cert_file: p521.crt\n  key_file: p521.key\n".into(),
            RustlsCannot,
        ));
    } else {
        eprintln!("openssl is not installed: the RSA-1024 and P-521 key cases are left out");
    }

    let mut failures = Vec::new();
    for (i, (name, text, expect)) in cases.iter().enumerate() {
        let path = d.write(&format!("case{i}.yml"), text);
        let out = std::process::Command::new(&promtool)
            .args(["check", "web-config"])
            .arg(&path)
            .output()
            .unwrap();
        let theirs = out.status.success();
        let their_text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let ours = WebConfig::load(&path);
        let our_text = match &ours {
            Ok(_) => "accepted".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        let ours = ours.is_ok();
        let unknown_to_promtool = their_text.contains("not found in type");
        let fine = match expect {
            Valid => theirs && ours,
            Invalid => !theirs && !ours,
            RustlsCannot | StricterHere => theirs && !ours,
            NewerToolkit => ours && (theirs || unknown_to_promtool),
            NotImplemented => !ours && (theirs || unknown_to_promtool),
        };
        eprintln!(
            "{:<42} {:?}: promtool {}, ours {}",
            name,
            expect,
            if theirs { "accepts" } else { "refuses" },
            if ours { "accepts" } else { "refuses" }
        );
        if !fine {
            failures.push(format!(
                "{name} (expected {expect:?}):\n  promtool: {}\n  ours: {our_text}",
                their_text.trim()
            ));
        }
        if !ours && matches!(expect, RustlsCannot | StricterHere | NotImplemented) {
            assert!(
                our_text.contains("web config "),
                "{name}: the refusal names the file: {our_text}"
            );
        }
    }
    assert!(
        failures.is_empty(),
        "disagreements:\n{}",
        failures.join("\n")
    );
}
