//! The web configuration file as written: YAML in the exporter-toolkit layout, read strictly
//! (an unknown key is an error, as `promtool check web-config` has it), then checked and turned
//! into a [`Spec`] whose values are all known to be usable. Nothing here touches the files the
//! configuration names; `tls.rs` reads those.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use hyper::header::{HeaderName, HeaderValue};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

/// The whole file. Every section may be absent or null.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default, deserialize_with = "users")]
    basic_auth_users: Option<Users>,
    /// Known to newer exporter-toolkit releases; refused with a clear message below rather than
    /// as an unknown key.
    rate_limit: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<Secret>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    #[serde(default, deserialize_with = "yaml11_bool")]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default, deserialize_with = "yaml11_bool")]
    http2: Option<bool>,
    #[serde(default, deserialize_with = "unique_map")]
    headers: Option<BTreeMap<String, String>>,
}

/// A string that is never shown: an inline private key or a password hash. Errors about it say
/// which setting is wrong, never what it holds.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Secret(pub(super) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Secret, E> {
                // `alice:` with nothing after it: an empty value, refused later by name.
                Ok(Secret(String::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
                Err(de::Error::custom("expected a string, found a map"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
                Err(de::Error::custom("expected a string, found a list"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("expected a string"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom("expected a string"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom("expected a string"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("expected a string"))
            }
        }
        d.deserialize_any(V)
    }
}

type Users = BTreeMap<String, Secret>;

/// `basic_auth_users`: a map without repeated names, whose refusal never quotes a hash.
fn users<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Users>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Users>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of user names to bcrypt hashes")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            collect_unique(map).map(Some)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(E::custom(
                "basic_auth_users must be a map of user names to bcrypt hashes, not a string",
            ))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(de::Error::custom(
                "basic_auth_users must be a map of user names to bcrypt hashes, not a list",
            ))
        }
    }
    d.deserialize_option(V)
}

/// A map in which a repeated key is an error, as Go's strict YAML decoding has it (serde's own
/// map impls keep the last value silently).
fn unique_map<'de, D, V>(d: D) -> Result<Option<BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Vis<V>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
        type Value = Option<BTreeMap<String, V>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            collect_unique(map).map(Some)
        }
    }
    d.deserialize_option(Vis(PhantomData))
}

fn collect_unique<'de, A, V>(mut map: A) -> Result<BTreeMap<String, V>, A::Error>
where
    A: MapAccess<'de>,
    V: Deserialize<'de>,
{
    let mut out = BTreeMap::new();
    while let Some(k) = map.next_key::<String>()? {
        if out.contains_key(&k) {
            return Err(de::Error::custom(format!("key {k:?} appears twice")));
        }
        let v = map.next_value()?;
        out.insert(k, v);
    }
    Ok(out)
}

/// A boolean as Go's YAML 1.1 decoder reads one: `true`/`false` and also `yes`/`no`, `on`/`off`,
/// `y`/`n` in their usual capitalisations.
fn yaml11_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("true or false")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(self)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True"
                | "TRUE" => Ok(Some(true)),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
                | "FALSE" => Ok(Some(false)),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_option(V)
}

/// Where a PEM block comes from: a file named in the configuration (relative names are taken
/// from the configuration file's folder, as the toolkit does) or the configuration itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    File(PathBuf),
    Inline(Secret),
}

impl Source {
    /// The setting's name, for messages: `cert_file (/etc/x/tls.crt)` or `cert`.
    pub(super) fn describe(&self, file_key: &str, inline_key: &str) -> String {
        match self {
            Source::File(p) => format!("{file_key} ({})", p.display()),
            Source::Inline(_) => inline_key.to_owned(),
        }
    }

    /// The PEM text; `file_key` names the setting in the error.
    pub(super) fn read(&self, file_key: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Source::File(p) => std::fs::read(p).with_context(|| {
                format!("tls_server_config.{file_key}: cannot read {}", p.display())
            }),
            Source::Inline(s) => Ok(s.0.as_bytes().to_vec()),
        }
    }
}

/// `client_auth_type`, with Go's meaning of each value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TlsVersion {
    Tls12,
    Tls13,
}

/// A TLS 1.2 cipher suite rustls implements, by its Go name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Suite {
    EcdheEcdsaAes128Gcm,
    EcdheEcdsaAes256Gcm,
    EcdheEcdsaChacha20,
    EcdheRsaAes128Gcm,
    EcdheRsaAes256Gcm,
    EcdheRsaChacha20,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    X25519,
    P256,
    P384,
}

/// `tls_server_config`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsSpec {
    pub cert: Source,
    pub key: Source,
    pub client_ca: Option<Source>,
    pub client_auth: ClientAuth,
    pub allowed_sans: Option<Vec<String>>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// `None`: rustls's defaults. TLS 1.3 suites named in the file are not in here: like Go,
    /// the TLS 1.3 suites are not configurable and all of them stay on.
    pub tls12_suites: Option<Vec<Suite>>,
    pub curves: Option<Vec<Curve>>,
    pub prefer_server_cipher_suites: bool,
}

/// The whole file, checked; what `tls.rs` and `auth.rs` are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spec {
    pub tls: Option<TlsSpec>,
    pub http2: bool,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub users: BTreeMap<String, Secret>,
}

/// The extra response headers the toolkit lets a configuration set, with the values it allows
/// for each (`None`: any value).
const EXTRA_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Content-Security-Policy", None),
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
];

fn read_raw(text: &str) -> anyhow::Result<RawFile> {
    // An empty file, or one holding only comments, is a valid configuration that changes
    // nothing (promtool accepts it); serde would call it a premature end of input.
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Ok(RawFile::default());
    }
    let raw: Option<RawFile> = serde_yaml_ng::from_str(text).map_err(|e| anyhow!("{e}"))?;
    Ok(raw.unwrap_or_default())
}

/// Relative file names are taken from the configuration file's folder.
fn join(dir: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_owned()
    } else {
        dir.join(p)
    }
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The files a configuration names (certificate, key, client CA), best effort: a file that
/// does not parse names none. The watcher polls these as well as the configuration itself.
pub(super) fn named_files(text: &str, dir: &Path) -> Vec<PathBuf> {
    let Ok(raw) = read_raw(text) else {
        return Vec::new();
    };
    let Some(t) = raw.tls_server_config else {
        return Vec::new();
    };
    [&t.cert_file, &t.key_file, &t.client_ca_file]
        .into_iter()
        .filter_map(|s| nonempty(s).map(|s| join(dir, s)))
        .collect()
}

/// Parse and check a configuration; `dir` is the folder relative file names are taken from.
pub(super) fn parse(text: &str, dir: &Path) -> anyhow::Result<Spec> {
    let raw = read_raw(text)?;
    if raw.rate_limit.is_some() {
        bail!(
            "rate_limit: not supported (ODIN exporters do not rate-limit requests; remove the \
             section)"
        );
    }
    let http = raw.http_server_config.unwrap_or_default();
    let headers = check_headers(http.headers.unwrap_or_default())?;
    let users = raw.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        check_bcrypt_hash(&hash.0)
            .map_err(|why| anyhow!("basic_auth_users: the hash of user {user:?} {why}"))?;
    }
    let tls = match raw.tls_server_config {
        Some(t) => check_tls(t, dir)?,
        None => None,
    };
    Ok(Spec {
        tls,
        http2: http.http2.unwrap_or(true),
        headers,
        users,
    })
}

fn check_headers(
    headers: BTreeMap<String, String>,
) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let Some((_, allowed)) = EXTRA_HEADERS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = EXTRA_HEADERS.iter().map(|(n, _)| *n).collect();
            bail!(
                "http_server_config.headers: header {name:?} cannot be set (allowed, spelled \
                 exactly so: {})",
                names.join(", ")
            );
        };
        if let Some(allowed) = allowed {
            if !allowed.contains(&value.as_str()) {
                bail!(
                    "http_server_config.headers: {name} must be one of {allowed:?}, not {value:?}"
                );
            }
        }
        if value.is_empty() {
            // "Unset if blank", in the toolkit's words.
            continue;
        }
        let v = HeaderValue::from_str(&value).map_err(|_| {
            anyhow!("http_server_config.headers: {name}: {value:?} is not a valid header value")
        })?;
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| anyhow!("http_server_config.headers: {name}: {e}"))?;
        out.push((n, v));
    }
    Ok(out)
}

/// Whether `hash` is a bcrypt hash the verifier can use: `$2a$`, `$2b$`, `$2x$` or `$2y$`, a
/// two-digit cost from 4 to 31, then 22 characters of salt and 31 of hash in bcrypt's base64.
/// Go's toolkit checks only the version, cost and length; a hash that passes those but not
/// this would fail every login there, so it is refused here. The message never quotes the
/// hash.
pub(super) fn check_bcrypt_hash(hash: &str) -> Result<(), String> {
    let b = hash.as_bytes();
    if b.is_empty() {
        return Err("is empty".into());
    }
    if b.len() != 60 {
        // Not the length itself: it would tell how long a plain-text password put here is.
        return Err(
            "is not a bcrypt hash (those are 60 characters long; make one with \
                    `htpasswd -nBC 10 USER`)"
                .into(),
        );
    }
    if b[0] != b'$' || b[1] != b'2' || !matches!(b[2], b'a' | b'b' | b'x' | b'y') || b[3] != b'$' {
        return Err("is not a bcrypt hash (it must start with $2a$, $2b$, $2x$ or $2y$)".into());
    }
    let cost = match (b[4], b[5]) {
        (t @ b'0'..=b'9', u @ b'0'..=b'9') => u32::from(t - b'0') * 10 + u32::from(u - b'0'),
        _ => return Err("is not a bcrypt hash (no two-digit cost after the version)".into()),
    };
    if !(4..=31).contains(&cost) {
        return Err(format!(
            "has cost {cost}, outside bcrypt's range of 4 to 31"
        ));
    }
    if b[6] != b'$' {
        return Err("is not a bcrypt hash (no '$' after the cost)".into());
    }
    let body_ok = b[7..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/');
    if !body_ok {
        return Err(
            "is not a bcrypt hash (its salt and hash hold characters outside bcrypt's base64)"
                .into(),
        );
    }
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::BCRYPT,
        base64::engine::general_purpose::NO_PAD,
    );
    if engine.decode(&b[7..29]).is_err() || engine.decode(&b[29..60]).is_err() {
        return Err("is not a bcrypt hash (its salt or hash does not decode)".into());
    }
    Ok(())
}

fn check_tls(t: RawTls, dir: &Path) -> anyhow::Result<Option<TlsSpec>> {
    let cert_file = nonempty(&t.cert_file);
    let key_file = nonempty(&t.key_file);
    let ca_file = nonempty(&t.client_ca_file);
    let cert_inline = nonempty(&t.cert);
    let key_inline = t.key.as_ref().filter(|k| !k.0.is_empty());
    let ca_inline = nonempty(&t.client_ca);
    let auth_name = nonempty(&t.client_auth_type);

    // The version, suite and curve names are checked whether or not TLS ends up on, so that
    // a setting rustls cannot honour is refused wherever it appears.
    let min_version =
        version("min_version", t.min_version.as_deref())?.unwrap_or(TlsVersion::Tls12);
    let max_version =
        version("max_version", t.max_version.as_deref())?.unwrap_or(TlsVersion::Tls13);
    let tls12_suites = t.cipher_suites.as_deref().map(suites).transpose()?;
    let curves = t.curve_preferences.as_deref().map(curves).transpose()?;
    let client_auth = match auth_name {
        None | Some("NoClientCert") => ClientAuth::NoClientCert,
        Some("RequestClientCert") => ClientAuth::RequestClientCert,
        // RequireClientCert: the old name, still accepted by the toolkit.
        Some("RequireAnyClientCert") | Some("RequireClientCert") => {
            ClientAuth::RequireAnyClientCert
        }
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyClientCertIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerifyClientCert,
        Some(other) => bail!(
            "tls_server_config.client_auth_type: unknown value {other:?} (one of NoClientCert, \
             RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, \
             RequireAndVerifyClientCert)"
        ),
    };

    let enabled = cert_file.is_some()
        || key_file.is_some()
        || ca_file.is_some()
        || cert_inline.is_some()
        || key_inline.is_some()
        || ca_inline.is_some()
        || auth_name.is_some();
    if !enabled {
        // As in the toolkit: without a certificate, key, CA or client auth type, TLS is off
        // and the other TLS settings have nothing to apply to.
        return Ok(None);
    }

    let cert = match (cert_file, cert_inline) {
        (Some(_), Some(_)) => bail!("tls_server_config: cert and cert_file are both set; keep one"),
        (Some(f), None) => Source::File(join(dir, f)),
        (None, Some(s)) => Source::Inline(Secret(s.to_owned())),
        (None, None) => bail!("tls_server_config: missing cert_file (or cert)"),
    };
    let key = match (key_file, key_inline) {
        (Some(_), Some(_)) => bail!("tls_server_config: key and key_file are both set; keep one"),
        (Some(f), None) => Source::File(join(dir, f)),
        (None, Some(s)) => Source::Inline(s.clone()),
        (None, None) => bail!("tls_server_config: missing key_file (or key)"),
    };
    let client_ca = match (ca_file, ca_inline) {
        (Some(_), Some(_)) => {
            bail!("tls_server_config: client_ca and client_ca_file are both set; keep one")
        }
        (Some(f), None) => Some(Source::File(join(dir, f))),
        (None, Some(s)) => Some(Source::Inline(Secret(s.to_owned()))),
        (None, None) => None,
    };

    match client_auth {
        ClientAuth::NoClientCert if client_ca.is_some() => bail!(
            "tls_server_config: a client CA is set but client_auth_type is NoClientCert; set \
             client_auth_type (RequireAndVerifyClientCert to check client certificates)"
        ),
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
            if client_ca.is_none() =>
        {
            bail!(
                "tls_server_config.client_auth_type: {} needs client_ca_file (or client_ca) to \
                 verify client certificates against; ODIN does not verify clients against the \
                 system's public CAs",
                auth_name.unwrap_or_default()
            )
        }
        _ => {}
    }
    if let Some(sans) = &t.client_allowed_sans {
        if !matches!(
            client_auth,
            ClientAuth::RequireAnyClientCert | ClientAuth::RequireAndVerifyClientCert
        ) {
            bail!(
                "tls_server_config.client_allowed_sans needs client_auth_type \
                 RequireAndVerifyClientCert or RequireAnyClientCert (with the others a client \
                 may send no certificate, leaving no SAN to match)"
            );
        }
        if sans.is_empty() {
            bail!("tls_server_config.client_allowed_sans is empty: no client could connect");
        }
    }
    if min_version > max_version {
        bail!(
            "tls_server_config: min_version {} is above max_version {}: no TLS version is left",
            version_name(min_version),
            version_name(max_version)
        );
    }
    let tls12_suites = match tls12_suites {
        Some(list) if list.is_empty() && min_version == TlsVersion::Tls12 => {
            if max_version == TlsVersion::Tls12 {
                bail!(
                    "tls_server_config.cipher_suites names no TLS 1.2 suite and max_version is \
                     TLS12: no handshake could succeed"
                );
            }
            // Only TLS 1.3 names: Go would fail every TLS 1.2 handshake; we say the same
            // thing by offering TLS 1.3 alone (see tls.rs).
            Some(list)
        }
        other => other,
    };

    Ok(Some(TlsSpec {
        cert,
        key,
        client_ca,
        client_auth,
        allowed_sans: t.client_allowed_sans,
        min_version,
        max_version,
        tls12_suites,
        curves,
        prefer_server_cipher_suites: t.prefer_server_cipher_suites.unwrap_or(true),
    }))
}

fn version_name(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "TLS12",
        TlsVersion::Tls13 => "TLS13",
    }
}

fn version(key: &str, v: Option<&str>) -> anyhow::Result<Option<TlsVersion>> {
    match v {
        None | Some("") => Ok(None),
        Some("TLS12") => Ok(Some(TlsVersion::Tls12)),
        Some("TLS13") => Ok(Some(TlsVersion::Tls13)),
        Some(old @ ("TLS10" | "TLS11")) => bail!(
            "tls_server_config.{key}: {old} is not supported: rustls implements TLS 1.2 and 1.3 \
             only (use TLS12 or TLS13)"
        ),
        Some(other) => {
            bail!("tls_server_config.{key}: unknown TLS version {other:?} (TLS12 or TLS13)")
        }
    }
}

/// Go's names of the suites `tls.CipherSuites()` lists for TLS 1.2 and below, with what rustls
/// makes of each: `Ok` for a suite it implements, `Err` with the reason for one it does not.
const GO_TLS12_SUITES: &[(&str, Result<Suite, &str>)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        Ok(Suite::EcdheEcdsaAes128Gcm),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        Ok(Suite::EcdheEcdsaAes256Gcm),
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        Ok(Suite::EcdheEcdsaChacha20),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        Ok(Suite::EcdheRsaAes128Gcm),
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        Ok(Suite::EcdheRsaAes256Gcm),
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        Ok(Suite::EcdheRsaChacha20),
    ),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", Err(CBC)),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", Err(CBC)),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", Err(CBC)),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", Err(CBC)),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", Err(CBC)),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", Err(CBC)),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", Err(RSA_KX)),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", Err(RSA_KX)),
];

const CBC: &str = "rustls implements no CBC-mode cipher suite";
const RSA_KX: &str = "rustls implements no suite with RSA key exchange (they lack forward secrecy)";

/// The TLS 1.3 suites Go lists too; accepted and, as in Go, without effect.
const GO_TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

fn suites(names: &[String]) -> anyhow::Result<Vec<Suite>> {
    let mut out = Vec::new();
    for name in names {
        if GO_TLS13_SUITES.contains(&name.as_str()) {
            continue;
        }
        match GO_TLS12_SUITES.iter().find(|(n, _)| n == name) {
            Some((_, Ok(s))) => {
                if !out.contains(s) {
                    out.push(*s);
                }
            }
            Some((_, Err(why))) => bail!(
                "tls_server_config.cipher_suites: {name} is not supported: {why} (supported: {})",
                supported_suites()
            ),
            None => bail!(
                "tls_server_config.cipher_suites: unknown cipher suite {name:?} (supported: {})",
                supported_suites()
            ),
        }
    }
    Ok(out)
}

fn supported_suites() -> String {
    GO_TLS12_SUITES
        .iter()
        .filter(|(_, s)| s.is_ok())
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn curves(names: &[String]) -> anyhow::Result<Vec<Curve>> {
    let mut out = Vec::new();
    for name in names {
        let c = match name.as_str() {
            "X25519" => Curve::X25519,
            "CurveP256" => Curve::P256,
            "CurveP384" => Curve::P384,
            "CurveP521" => bail!(
                "tls_server_config.curve_preferences: CurveP521 is not supported: rustls's ring \
                 provider has no P-521 key exchange (use X25519, CurveP256 or CurveP384)"
            ),
            other => bail!(
                "tls_server_config.curve_preferences: unknown curve {other:?} (X25519, \
                 CurveP256 or CurveP384)"
            ),
        };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    if out.is_empty() {
        // Go treats an empty list as "the defaults".
        return Ok(vec![Curve::X25519, Curve::P256, Curve::P384]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$xfu6ned.mGTGP98njkFGquzoCwpCs4bV3PJ7bMfTPDNSmehmjW5/i";

    fn p(text: &str) -> anyhow::Result<Spec> {
        parse(text, Path::new("/etc/odin"))
    }

    fn err(text: &str) -> String {
        format!("{:#}", p(text).unwrap_err())
    }

    #[test]
    fn every_key_parses() {
        let text = format!(
            "tls_server_config:
  cert_file: tls.crt
  key_file: /abs/tls.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
  client_allowed_sans: [scraper.example, 10.0.0.1]
  min_version: TLS13
  max_version: TLS13
  cipher_suites:
    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    - TLS_AES_128_GCM_SHA256
    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
  curve_preferences: [CurveP384, X25519]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    Content-Security-Policy: default-src 'self'
    Strict-Transport-Security: max-age=31536000
    X-Content-Type-Options: nosniff
    X-Frame-Options: sameorigin
    X-XSS-Protection: '1; mode=block'
basic_auth_users:
  alice: {HASH}
  bob: '{HASH}'
"
        );
        let s = p(&text).unwrap();
        let t = s.tls.unwrap();
        assert!(t.cert == Source::File("/etc/odin/tls.crt".into()));
        assert!(t.key == Source::File("/abs/tls.key".into()));
        assert!(t.client_ca == Some(Source::File("/etc/odin/ca.crt".into())));
        assert_eq!(t.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(
            t.allowed_sans,
            Some(vec!["scraper.example".to_owned(), "10.0.0.1".to_owned()])
        );
        assert_eq!(
            (t.min_version, t.max_version),
            (TlsVersion::Tls13, TlsVersion::Tls13)
        );
        assert_eq!(
            t.tls12_suites,
            Some(vec![Suite::EcdheRsaAes256Gcm, Suite::EcdheEcdsaChacha20])
        );
        assert_eq!(t.curves, Some(vec![Curve::P384, Curve::X25519]));
        assert!(!t.prefer_server_cipher_suites);
        assert!(!s.http2);
        let names: Vec<&str> = s.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-security-policy",
                "strict-transport-security",
                "x-content-type-options",
                "x-frame-options",
                "x-xss-protection"
            ]
        );
        assert_eq!(s.headers[0].1, "default-src 'self'");
        assert_eq!(s.users.len(), 2);
        assert_eq!(s.users["bob"].0, HASH);
    }

    #[test]
    fn inline_pem_keys_parse() {
        let s = p("tls_server_config:\n  cert: CERT\n  key: KEY\n  client_ca: CA\n  client_auth_type: RequireAnyClientCert\n").unwrap();
        let t = s.tls.unwrap();
        assert!(t.cert == Source::Inline(Secret("CERT".into())));
        assert!(t.key == Source::Inline(Secret("KEY".into())));
        assert!(t.client_ca == Some(Source::Inline(Secret("CA".into()))));
        assert_eq!(t.client_auth, ClientAuth::RequireAnyClientCert);
        assert!(
            !format!("{t:?}").contains("KEY"),
            "an inline key is never shown"
        );
    }

    #[test]
    fn defaults() {
        for text in [
            "",
            "# nothing\n\n",
            "tls_server_config:\n",
            "tls_server_config: {}\n",
            "basic_auth_users:\nhttp_server_config: {}\n",
        ] {
            let s = p(text).unwrap();
            assert!(s.tls.is_none(), "{text:?}");
            assert!(s.http2, "http2 defaults to true");
            assert!(s.headers.is_empty() && s.users.is_empty());
        }
        let t = p("tls_server_config:\n  cert_file: c\n  key_file: k\n")
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(t.client_auth, ClientAuth::NoClientCert);
        assert_eq!(
            (t.min_version, t.max_version),
            (TlsVersion::Tls12, TlsVersion::Tls13)
        );
        assert!(t.tls12_suites.is_none() && t.curves.is_none());
        assert!(t.prefer_server_cipher_suites);
    }

    #[test]
    fn go_booleans() {
        let s = p("http_server_config:\n  http2: off\ntls_server_config:\n  cert_file: c\n  key_file: k\n  prefer_server_cipher_suites: No\n").unwrap();
        assert!(!s.http2);
        assert!(!s.tls.unwrap().prefer_server_cipher_suites);
        assert!(p("http_server_config:\n  http2: yes\n").unwrap().http2);
        assert!(err("http_server_config:\n  http2: maybe\n").contains("http2"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = err("foo: 1\n");
        assert!(e.contains("unknown field `foo`"), "{e}");
        let e = err("tls_server_config:\n  cert_file: c\n  key_file: k\n  bogus: 1\n");
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = err("http_server_config:\n  http3: true\n");
        assert!(e.contains("unknown field `http3`"), "{e}");
        let e = err("rate_limit:\n  interval: 1s\n  burst: 2\n");
        assert!(e.contains("rate_limit: not supported"), "{e}");
        assert!(err("- a\n").contains("invalid type"));
        let e = err("basic_auth_users: {}\n---\nfoo: 1\n");
        assert!(e.contains("more than one document"), "{e}");
    }

    #[test]
    fn repeated_keys_are_refused() {
        let e = err(&format!(
            "basic_auth_users:\n  alice: {HASH}\n  alice: {HASH}\n"
        ));
        assert!(e.contains("\"alice\" appears twice"), "{e}");
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Frame-Options: deny\n");
        assert!(e.contains("appears twice"), "{e}");
    }

    #[test]
    fn old_tls_versions_are_refused() {
        for (key, v) in [
            ("min_version", "TLS10"),
            ("min_version", "TLS11"),
            ("max_version", "TLS11"),
        ] {
            let e = err(&format!(
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  {key}: {v}\n"
            ));
            assert!(
                e.contains(&format!("tls_server_config.{key}: {v} is not supported")),
                "{e}"
            );
            assert!(e.contains("TLS 1.2 and 1.3 only"), "{e}");
        }
        // Even where TLS is off: the setting could never be honoured.
        assert!(err("tls_server_config:\n  min_version: TLS10\n").contains("TLS10"));
        assert!(
            err("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: tls12\n")
                .contains("unknown TLS version \"tls12\"")
        );
        let e = err("tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  max_version: TLS12\n");
        assert!(
            e.contains("min_version TLS13 is above max_version TLS12"),
            "{e}"
        );
    }

    #[test]
    fn cipher_suites() {
        let base = "tls_server_config:\n  cert_file: c\n  key_file: k\n  cipher_suites:\n";
        let e = err(&format!("{base}    - TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA\n"));
        assert!(
            e.contains("cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA is not supported: rustls implements no CBC-mode cipher suite"),
            "{e}"
        );
        assert!(
            e.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "lists what works: {e}"
        );
        let e = err(&format!("{base}    - TLS_RSA_WITH_AES_128_GCM_SHA256\n"));
        assert!(e.contains("RSA key exchange"), "{e}");
        let e = err(&format!(
            "{base}    - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305\n"
        ));
        assert!(e.contains("unknown cipher suite"), "{e}");
        let e = err(&format!("{base}    - TLS_RSA_WITH_3DES_EDE_CBC_SHA\n"));
        assert!(e.contains("unknown cipher suite"), "{e}");
        // Only TLS 1.3 names, with TLS 1.2 allowed: TLS 1.2 gets no suite.
        let t = p(&format!("{base}    - TLS_AES_128_GCM_SHA256\n"))
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(t.tls12_suites, Some(vec![]));
        let e = err(&format!(
            "{base}    - TLS_AES_128_GCM_SHA256\n  max_version: TLS12\n"
        ));
        assert!(e.contains("no handshake could succeed"), "{e}");
        // Every mapped name.
        for (name, s) in GO_TLS12_SUITES
            .iter()
            .filter_map(|(n, s)| s.ok().map(|s| (n, s)))
        {
            let t = p(&format!("{base}    - {name}\n")).unwrap().tls.unwrap();
            assert_eq!(t.tls12_suites, Some(vec![s]));
        }
    }

    #[test]
    fn curves_map() {
        let base = "tls_server_config:\n  cert_file: c\n  key_file: k\n  curve_preferences: ";
        let t = p(&format!("{base}[CurveP256, CurveP384, X25519]\n"))
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(
            t.curves,
            Some(vec![Curve::P256, Curve::P384, Curve::X25519])
        );
        let e = err(&format!("{base}[CurveP521]\n"));
        assert!(e.contains("CurveP521 is not supported"), "{e}");
        assert!(err(&format!("{base}[P256]\n")).contains("unknown curve \"P256\""));
    }

    #[test]
    fn client_auth_rules() {
        let base = "tls_server_config:\n  cert_file: c\n  key_file: k\n";
        let e = err(&format!("{base}  client_ca_file: ca\n"));
        assert!(e.contains("client_auth_type is NoClientCert"), "{e}");
        let e = err(&format!(
            "{base}  client_auth_type: requireandverifyclientcert\n"
        ));
        assert!(e.contains("unknown value"), "{e}");
        for v in ["VerifyClientCertIfGiven", "RequireAndVerifyClientCert"] {
            let e = err(&format!("{base}  client_auth_type: {v}\n"));
            assert!(e.contains(&format!("{v} needs client_ca_file")), "{e}");
        }
        let t = p(&format!("{base}  client_auth_type: RequireClientCert\n"))
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(
            t.client_auth,
            ClientAuth::RequireAnyClientCert,
            "the old name"
        );
        for v in ["RequestClientCert", "VerifyClientCertIfGiven"] {
            let e = err(&format!(
                "{base}  client_auth_type: {v}\n  client_ca_file: ca\n  client_allowed_sans: [a]\n"
            ));
            assert!(
                e.contains("client_allowed_sans needs client_auth_type"),
                "{e}"
            );
        }
        let e = err(&format!(
            "{base}  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: []\n"
        ));
        assert!(e.contains("is empty"), "{e}");
        // TLS named only through the client auth type still needs a certificate.
        let e = err("tls_server_config:\n  client_auth_type: RequireAnyClientCert\n");
        assert!(e.contains("missing cert_file"), "{e}");
        assert!(err("tls_server_config:\n  cert_file: c\n").contains("missing key_file"));
        assert!(err("tls_server_config:\n  key_file: k\n").contains("missing cert_file"));
        assert!(
            err("tls_server_config:\n  cert_file: c\n  cert: x\n  key_file: k\n")
                .contains("both set")
        );
    }

    #[test]
    fn headers_follow_the_toolkit() {
        let e = err("http_server_config:\n  headers:\n    Foo: bar\n");
        assert!(e.contains("header \"Foo\" cannot be set"), "{e}");
        let e = err("http_server_config:\n  headers:\n    x-frame-options: deny\n");
        assert!(e.contains("cannot be set"), "names are case-sensitive: {e}");
        let e = err("http_server_config:\n  headers:\n    X-Frame-Options: DENY\n");
        assert!(
            e.contains("X-Frame-Options must be one of [\"deny\", \"sameorigin\"]"),
            "{e}"
        );
        assert!(
            err("http_server_config:\n  headers:\n    X-Frame-Options: ''\n")
                .contains("must be one of")
        );
        assert!(
            err("http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n")
                .contains("must be one of")
        );
        let s = p("http_server_config:\n  headers:\n    Strict-Transport-Security: ''\n    X-XSS-Protection: '0'\n").unwrap();
        assert_eq!(s.headers.len(), 1, "a blank free-form header is left unset");
        let e = err("http_server_config:\n  headers:\n    Content-Security-Policy: \"a\\nb\"\n");
        assert!(e.contains("not a valid header value"), "{e}");
    }

    #[test]
    fn bcrypt_hashes_are_checked_and_never_quoted() {
        assert!(check_bcrypt_hash(HASH).is_ok());
        for v in ["a", "b", "x"] {
            assert!(check_bcrypt_hash(&HASH.replacen("2y", &format!("2{v}"), 1)).is_ok());
        }
        let bad = [
            ("", "is empty"),
            ("notahash", "60 characters long"),
            (&HASH.replacen("$2y$", "$3y$", 1), "must start with"),
            (&HASH.replacen("$10$", "$03$", 1), "cost 3"),
            (&HASH.replacen("$10$", "$32$", 1), "cost 32"),
            (&HASH.replacen("$10$", "$1x$", 1), "two-digit cost"),
            (&HASH.replacen("xfu6", "x!u6", 1), "outside bcrypt's base64"),
        ];
        for (h, why) in bad {
            let e = check_bcrypt_hash(h).unwrap_err();
            assert!(e.contains(why), "{h:?}: {e}");
            let e = err(&format!("basic_auth_users:\n  alice: '{h}'\n"));
            assert!(e.contains("the hash of user \"alice\""), "{e}");
            if !h.is_empty() {
                assert!(!e.contains(h), "the hash is quoted: {e}");
            }
        }
        let e = err("basic_auth_users:\n  alice:\n");
        assert!(e.contains("is empty"), "{e}");
        let e = err(&format!("basic_auth_users: '{HASH}'\n"));
        assert!(!e.contains(HASH) && e.contains("not a string"), "{e}");
        let e = err(&format!("basic_auth_users:\n  alice: [{HASH}]\n"));
        assert!(!e.contains(HASH), "{e}");
    }

    #[test]
    fn named_files_for_the_watcher() {
        let dir = Path::new("/d");
        let files = named_files(
            "tls_server_config:\n  cert_file: c\n  key_file: /k\n  client_ca_file: sub/ca\n  client_auth_type: X\n",
            dir,
        );
        assert_eq!(
            files,
            [
                PathBuf::from("/d/c"),
                PathBuf::from("/k"),
                PathBuf::from("/d/sub/ca")
            ]
        );
        assert!(named_files("{{{", dir).is_empty());
        assert!(named_files("tls_server_config:\n  cert: x\n", dir).is_empty());
    }
}
