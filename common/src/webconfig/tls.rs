//! `tls_server_config` as a rustls [`ServerConfig`]: the certificate and key (checked to
//! belong together), the protocol versions, cipher suites and key-exchange groups, and the
//! client-certificate policy.
//!
//! The five `client_auth_type` values map as follows:
//!
//! | value | rustls |
//! |---|---|
//! | `NoClientCert` | no client certificate is asked for |
//! | `RequestClientCert` | asked for, not required, not checked against a CA ([`AnyClientCert`]) |
//! | `RequireAnyClientCert` | required, not checked against a CA ([`AnyClientCert`]) |
//! | `VerifyClientCertIfGiven` | [`WebPkiClientVerifier`] over the client CA, allowing clients without one |
//! | `RequireAndVerifyClientCert` | [`WebPkiClientVerifier`] over the client CA |
//!
//! In the two unchecked modes a client still has to prove it holds the key of the certificate
//! it sends (the handshake signature is verified), as in Go. `client_allowed_sans` wraps the
//! verifier in [`SanCheck`].

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};

use super::file::{ClientAuth, Curve, Source, Suite, TlsSpec, TlsVersion};

/// The rustls provider for `spec`: ring, narrowed to the suites and groups the file names.
fn provider(spec: &TlsSpec) -> CryptoProvider {
    use ring::cipher_suite as cs;
    let base = ring::default_provider();
    let mut suites: Vec<SupportedCipherSuite> = vec![
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    match &spec.tls12_suites {
        None => suites.extend(
            base.cipher_suites
                .iter()
                .filter(|s| s.version() == &rustls::version::TLS12),
        ),
        Some(list) => suites.extend(list.iter().map(|s| match s {
            Suite::EcdheEcdsaAes128Gcm => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            Suite::EcdheEcdsaAes256Gcm => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            Suite::EcdheEcdsaChacha20 => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            Suite::EcdheRsaAes128Gcm => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            Suite::EcdheRsaAes256Gcm => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            Suite::EcdheRsaChacha20 => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        })),
    }
    let kx_groups: Vec<&'static dyn SupportedKxGroup> = match &spec.curves {
        None => base.kx_groups.clone(),
        Some(list) => list
            .iter()
            .map(|c| match c {
                Curve::X25519 => ring::kx_group::X25519,
                Curve::P256 => ring::kx_group::SECP256R1,
                Curve::P384 => ring::kx_group::SECP384R1,
            })
            .collect(),
    };
    CryptoProvider {
        cipher_suites: suites,
        kx_groups,
        ..base
    }
}

fn versions(spec: &TlsSpec) -> Vec<&'static SupportedProtocolVersion> {
    // Only TLS 1.3 suite names in cipher_suites: TLS 1.2 has no suite left, so only TLS 1.3 is
    // offered (file.rs refused the case where that leaves nothing).
    let tls12_empty = spec.tls12_suites.as_ref().is_some_and(|l| l.is_empty());
    let mut out = Vec::new();
    if spec.min_version <= TlsVersion::Tls13 && spec.max_version >= TlsVersion::Tls13 {
        out.push(&rustls::version::TLS13);
    }
    if spec.min_version == TlsVersion::Tls12 && !tls12_empty {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// Every certificate in a PEM text, in order.
fn certs(
    src: &Source,
    file_key: &str,
    inline_key: &str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = src.read(file_key)?;
    let what = src.describe(file_key, inline_key);
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("tls_server_config.{what}: not valid PEM: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!(
            "tls_server_config.{what}: no certificate found (expected PEM CERTIFICATE blocks)"
        );
    }
    Ok(certs)
}

fn private_key(src: &Source) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = src.read("key_file")?;
    let what = src.describe("key_file", "key");
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => anyhow!(
            "tls_server_config.{what}: no private key found (expected an unencrypted PKCS#8, \
             PKCS#1 or SEC1 PEM key)"
        ),
        // The PEM error says where the text went wrong, never what the key holds.
        e => anyhow!("tls_server_config.{what}: not a valid PEM private key: {e}"),
    })
}

fn root_store(src: &Source) -> anyhow::Result<RootCertStore> {
    let what = src.describe("client_ca_file", "client_ca");
    let mut roots = RootCertStore::empty();
    for (i, der) in certs(src, "client_ca_file", "client_ca")?
        .into_iter()
        .enumerate()
    {
        roots.add(der).map_err(|e| {
            anyhow!(
                "tls_server_config.{what}: certificate {} cannot be used as a CA: {e}",
                i + 1
            )
        })?;
    }
    Ok(roots)
}

/// Build the server side of `spec`, reading the files it names.
pub(super) fn build(spec: &TlsSpec) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(provider(spec));
    let chain = certs(&spec.cert, "cert_file", "cert")?;
    let key = private_key(&spec.key)?;
    let (cert_what, key_what) = (
        spec.cert.describe("cert_file", "cert"),
        spec.key.describe("key_file", "key"),
    );
    let loaded = provider.key_provider.load_private_key(key).map_err(|e| {
        anyhow!(
            "tls_server_config.{key_what}: the key cannot be used: {e} (rustls with ring signs \
             with RSA keys of 2048 to 8192 bits, ECDSA P-256 or P-384 keys, and Ed25519 keys)"
        )
    })?;
    let certified = CertifiedKey::new(chain, loaded);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            anyhow::bail!(
                "tls_server_config: {key_what} does not belong to {cert_what}: the key is not \
                 the one the certificate names"
            )
        }
        Err(e) => anyhow::bail!("tls_server_config.{cert_what}: {e}"),
    }

    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions(spec))
        .context("tls_server_config: the versions, cipher suites and curves do not fit together")?;
    let builder = match client_verifier(spec, &provider)? {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    cfg.ignore_client_order = spec.prefer_server_cipher_suites;
    // HTTP/1.1 only, whatever http2 says (see docs/web-config.md).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn client_verifier(
    spec: &TlsSpec,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Option<Arc<dyn ClientCertVerifier>>> {
    let roots = spec.client_ca.as_ref().map(root_store).transpose()?;
    let any = |mandatory: bool| -> Arc<dyn ClientCertVerifier> {
        Arc::new(AnyClientCert {
            mandatory,
            hints: roots.as_ref().map(|r| r.subjects()).unwrap_or_default(),
            algorithms: provider.signature_verification_algorithms,
        })
    };
    let webpki = |allow_anonymous: bool| -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
        let roots = roots.clone().ok_or_else(|| {
            anyhow!("tls_server_config: client certificate checks need a client CA")
        })?;
        let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
        let b = if allow_anonymous {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build()
            .map_err(|e| anyhow!("tls_server_config: the client CA cannot be used: {e}"))
    };
    let verifier = match spec.client_auth {
        ClientAuth::NoClientCert => return Ok(None),
        ClientAuth::RequestClientCert => any(false),
        ClientAuth::RequireAnyClientCert => any(true),
        ClientAuth::VerifyClientCertIfGiven => webpki(true)?,
        ClientAuth::RequireAndVerifyClientCert => webpki(false)?,
    };
    Ok(Some(match &spec.allowed_sans {
        Some(allowed) => Arc::new(SanCheck {
            inner: verifier,
            allowed: allowed.clone(),
        }),
        None => verifier,
    }))
}

/// `RequestClientCert` and `RequireAnyClientCert`: any certificate is taken as it is; the
/// client must still sign the handshake with its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: after the inner verifier, the client certificate must carry one of
/// the listed names among its DNS, e-mail, IP or URI subject alternative names (exact match,
/// IPs written as Go writes them).
#[derive(Debug)]
struct SanCheck {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

/// The subject alternative names of a DER certificate as strings.
pub(super) fn sans(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("unparseable: {e}"))?;
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subject alternative names: {e}"))?;
    let mut out = Vec::new();
    for name in ext.iter().flat_map(|e| e.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                out.push((*s).to_owned())
            }
            GeneralName::IPAddress(b) => {
                let ip = match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()),
                    16 => {
                        let v6 =
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap_or_default());
                        // Go prints an IPv4-mapped address as plain IPv4.
                        match v6.to_ipv4_mapped() {
                            Some(v4) => IpAddr::V4(v4),
                            None => IpAddr::V6(v6),
                        }
                    }
                    _ => continue,
                };
                out.push(ip.to_string());
            }
            _ => {}
        }
    }
    Ok(out)
}

impl ClientCertVerifier for SanCheck {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = sans(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if names.iter().any(|n| self.allowed.contains(n)) {
            Ok(ok)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
