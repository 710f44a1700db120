//! `basic_auth_users`: HTTP Basic authentication against bcrypt hashes, with a cache of
//! successful checks.
//!
//! A bcrypt check at cost 10 takes tens of milliseconds of CPU on purpose, and Prometheus
//! sends the same credentials with every scrape, so a success is remembered:
//!
//! - The cache maps a user name to a tag: HMAC-SHA-256, under a key drawn at random once per
//!   process, of the user name and the password that passed. The password itself is not kept,
//!   and the tag means nothing outside this process.
//! - A request hits the cache only when the HMAC of the password it presents, under the same
//!   key, equals the stored tag (compared in constant time by `ring::hmac::verify`). Another
//!   password, right or wrong, misses and pays a full bcrypt check.
//! - Failures are never cached, and a user has one entry at most (its latest success), so the
//!   cache holds at most as many entries as there are users (and never more than
//!   `MAX_CACHED`, 1024).
//! - The cache belongs to one [`BasicAuth`], which is built from one set of users: a reload
//!   that changes any user or hash builds a new one with an empty cache (the watcher keeps the
//!   old one when the users are unchanged).
//!
//! bcrypt checks run one at a time (a flood of wrong passwords then costs one core, not all of
//! them). A user name that does not exist is checked against a configured hash all the same,
//! so the answer takes as long as for a wrong password. Nothing here logs a password, a hash
//! or a tag.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use base64::Engine as _;
use hyper::header::HeaderValue;
use ring::hmac;

use super::file::Secret;

/// What to do with a request, as far as basic authentication goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve it.
    Allowed,
    /// Answer `401 Unauthorized` with `WWW-Authenticate:` [`Decision::CHALLENGE`].
    Unauthorized,
}

impl Decision {
    /// The `WWW-Authenticate` value sent with a 401.
    pub const CHALLENGE: &'static str = "Basic";
}

/// Most cache entries kept; only reachable with more users than this.
const MAX_CACHED: usize = 1024;

/// The process's cache key, drawn once. `None` if the system has no randomness to give, and
/// then nothing is cached (every request pays bcrypt) rather than using a guessable key.
fn cache_key() -> Option<&'static hmac::Key> {
    static KEY: OnceLock<Option<hmac::Key>> = OnceLock::new();
    KEY.get_or_init(|| {
        hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok()
    })
    .as_ref()
}

/// What the tag covers: the user name's length, the name, the password. The length keeps
/// ("ab", "c") and ("a", "bc") apart.
fn tag_input(user: &str, password: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + user.len() + password.len());
    m.extend_from_slice(&(user.len() as u64).to_be_bytes());
    m.extend_from_slice(user.as_bytes());
    m.extend_from_slice(password);
    m
}

/// The users of one configuration and the cache of their successful checks.
pub struct BasicAuth {
    users: BTreeMap<String, Secret>,
    cache: Mutex<HashMap<String, hmac::Tag>>,
    /// Held while bcrypt runs, so that checks run one at a time.
    bcrypt: Mutex<()>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// User name and password from an `Authorization: Basic` value; `None` for anything else.
fn credentials(value: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let v = value.as_bytes();
    let (scheme, rest) = v.split_at(v.iter().position(|b| *b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let token = std::str::from_utf8(rest).ok()?.trim_matches(' ');
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let (user, pass) = (decoded[..colon].to_vec(), decoded[colon + 1..].to_vec());
    Some((user, pass))
}

impl BasicAuth {
    pub(super) fn new(users: BTreeMap<String, Secret>) -> BasicAuth {
        BasicAuth {
            users,
            cache: Mutex::new(HashMap::new()),
            bcrypt: Mutex::new(()),
        }
    }

    /// Whether the configuration has users, i.e. whether requests need credentials at all.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether `other` has exactly the same users and hashes (its cache would be the same).
    pub(super) fn same_users(&self, other: &BasicAuth) -> bool {
        self.users == other.users
    }

    /// Decide on a request from its `Authorization` header. Cheap when there are no users,
    /// when the header is missing or malformed, and for credentials that passed before;
    /// otherwise one bcrypt check (tens of milliseconds of CPU at cost 10, more at higher
    /// costs, waiting for any other check in progress), so call it where blocking is fine
    /// (`spawn_blocking`), or try [`BasicAuth::check_cached`] first.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Decision {
        if let Some(d) = self.check_cached(authorization) {
            return d;
        }
        let Some((user, pass)) = authorization.and_then(credentials) else {
            return Decision::Unauthorized;
        };
        self.check_slow(&user, &pass)
    }

    /// The decision if it can be made without bcrypt: `Some` when there are no users, when
    /// the header is missing or not valid Basic credentials, or on a cache hit; `None` when a
    /// bcrypt check is needed ([`BasicAuth::check`] does it).
    pub fn check_cached(&self, authorization: Option<&HeaderValue>) -> Option<Decision> {
        if self.users.is_empty() {
            return Some(Decision::Allowed);
        }
        let Some((user, pass)) = authorization.and_then(credentials) else {
            return Some(Decision::Unauthorized);
        };
        let user = std::str::from_utf8(&user).ok()?;
        if !self.users.contains_key(user) {
            return None;
        }
        self.cache_hit(user, &pass).then_some(Decision::Allowed)
    }

    fn cache_hit(&self, user: &str, pass: &[u8]) -> bool {
        let Some(key) = cache_key() else {
            return false;
        };
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(user) {
            Some(tag) => hmac::verify(key, &tag_input(user, pass), tag.as_ref()).is_ok(),
            None => false,
        }
    }

    fn check_slow(&self, user: &[u8], pass: &[u8]) -> Decision {
        let known = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.users.get_key_value(u));
        let _one_at_a_time = self.bcrypt.lock().unwrap_or_else(|e| e.into_inner());
        let Some((user, hash)) = known else {
            // An unknown user costs one bcrypt all the same, against a real hash (the first
            // user's), so that timing does not tell which names exist.
            if let Some(decoy) = self.users.values().next() {
                let _ = bcrypt::verify(pass, &decoy.0);
            }
            return Decision::Unauthorized;
        };
        // A request that waited for the lock may find its success cached by now.
        if self.cache_hit(user, pass) {
            return Decision::Allowed;
        }
        // Errors (a hash bcrypt cannot read) count as a wrong password; file.rs checked every
        // hash's form at load, and bcrypt's error text would quote the hash, so it is dropped.
        if !matches!(bcrypt::verify(pass, &hash.0), Ok(true)) {
            return Decision::Unauthorized;
        }
        if let Some(key) = cache_key() {
            let tag = hmac::sign(key, &tag_input(user, pass));
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() < MAX_CACHED || cache.contains_key(user) {
                cache.insert(user.clone(), tag);
            }
        }
        Decision::Allowed
    }

    #[cfg(test)]
    pub(super) fn cached_entries(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn basic(user: &str, pass: &str) -> HeaderValue {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {enc}")).unwrap()
    }

    fn auth(cost: u32, users: &[(&str, &str)]) -> BasicAuth {
        BasicAuth::new(
            users
                .iter()
                .map(|(u, p)| (u.to_string(), Secret(bcrypt::hash(p, cost).unwrap())))
                .collect(),
        )
    }

    #[test]
    fn no_users_allows_everything() {
        let a = BasicAuth::new(BTreeMap::new());
        assert!(!a.enabled());
        assert_eq!(a.check(None), Decision::Allowed);
        assert_eq!(a.check(Some(&basic("x", "y"))), Decision::Allowed);
    }

    #[test]
    fn header_parsing() {
        let c = |s: &str| credentials(&HeaderValue::from_str(s).unwrap());
        assert_eq!(
            c("Basic YWxpY2U6cDpx"),
            Some((b"alice".to_vec(), b"p:q".to_vec()))
        );
        assert_eq!(
            c("bAsIc  YWxpY2U6 "),
            Some((b"alice".to_vec(), b"".to_vec()))
        );
        assert_eq!(c("Bearer YWxpY2U6cDpx"), None);
        assert_eq!(c("Basic"), None);
        assert_eq!(c("Basic !!!"), None);
        assert_eq!(c("Basic YWxpY2U="), None, "no colon");
        assert_eq!(c("BasicYWxpY2U6cDpx"), None);
    }

    #[test]
    fn good_and_bad_passwords() {
        let a = auth(4, &[("alice", "s3cret"), ("bob", "hunter2")]);
        assert!(a.enabled());
        assert_eq!(a.check(None), Decision::Unauthorized);
        assert_eq!(
            a.check(Some(&HeaderValue::from_static("Bearer x"))),
            Decision::Unauthorized
        );
        assert_eq!(
            a.check(Some(&basic("alice", "wrong"))),
            Decision::Unauthorized
        );
        assert_eq!(a.cached_entries(), 0, "failures are not cached");
        assert_eq!(a.check(Some(&basic("alice", "s3cret"))), Decision::Allowed);
        assert_eq!(a.check(Some(&basic("bob", "hunter2"))), Decision::Allowed);
        assert_eq!(a.cached_entries(), 2);
        // Another user's password, an unknown user, a wrong password after a good one.
        assert_eq!(
            a.check(Some(&basic("bob", "s3cret"))),
            Decision::Unauthorized
        );
        assert_eq!(
            a.check(Some(&basic("carol", "s3cret"))),
            Decision::Unauthorized
        );
        assert_eq!(
            a.check(Some(&basic("alice", "s3cret "))),
            Decision::Unauthorized
        );
        assert_eq!(a.check(Some(&basic("alice", ""))), Decision::Unauthorized);
        assert_eq!(a.check(Some(&basic("", "s3cret"))), Decision::Unauthorized);
        assert_eq!(a.check_cached(Some(&basic("alice", "wrong"))), None);
        assert_eq!(
            a.check_cached(Some(&basic("alice", "s3cret"))),
            Some(Decision::Allowed)
        );
        assert_eq!(a.check_cached(None), Some(Decision::Unauthorized));
        assert_eq!(a.cached_entries(), 2);
    }

    #[test]
    fn user_and_password_boundaries_do_not_collide() {
        // "ab" + "c" and "a" + "bc" concatenate alike; the tag must tell them apart.
        let a = auth(4, &[("ab", "c"), ("a", "bcx")]);
        assert_eq!(a.check(Some(&basic("ab", "c"))), Decision::Allowed);
        assert_eq!(a.check_cached(Some(&basic("a", "bc"))), None);
        assert_eq!(a.check(Some(&basic("a", "bc"))), Decision::Unauthorized);
    }

    #[test]
    fn cache_hit_is_much_cheaper_than_bcrypt() {
        let a = auth(10, &[("alice", "s3cret")]);
        let h = basic("alice", "s3cret");
        let start = Instant::now();
        assert_eq!(a.check(Some(&h)), Decision::Allowed);
        let miss = start.elapsed();
        let start = Instant::now();
        for _ in 0..100 {
            assert_eq!(a.check(Some(&h)), Decision::Allowed);
        }
        let hit = start.elapsed() / 100;
        eprintln!("bcrypt cost 10: miss {miss:?}, hit {hit:?}");
        // Loose on purpose (shared CPUs): a hit must not be anywhere near a bcrypt run.
        assert!(hit * 20 < miss, "miss {miss:?}, hit {hit:?}");
        // A wrong password after the good one still pays bcrypt and is refused.
        let start = Instant::now();
        assert_eq!(
            a.check(Some(&basic("alice", "s3cre"))),
            Decision::Unauthorized
        );
        assert!(start.elapsed() > hit * 20, "{:?}", start.elapsed());
        // So does an unknown user.
        let start = Instant::now();
        assert_eq!(
            a.check(Some(&basic("mallory", "s3cret"))),
            Decision::Unauthorized
        );
        assert!(start.elapsed() > Duration::from_micros(1) && start.elapsed() > hit * 20);
    }

    #[test]
    fn same_users() {
        let a = auth(4, &[("alice", "x")]);
        let b = BasicAuth::new(a.users.clone());
        assert!(a.same_users(&b));
        let c = auth(4, &[("alice", "x")]);
        assert!(!a.same_users(&c), "another salt is another hash");
        assert!(
            !format!("{a:?}").contains("$2"),
            "Debug shows no hash: {a:?}"
        );
    }
}
