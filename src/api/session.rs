//! People sign in with a user name and password and get a session cookie; scripts keep using
//! bearer tokens. `POST /api/session` signs in, `GET /api/session` says who is signed in (and
//! gives the CSRF token), `DELETE /api/session` signs out.
//!
//! # The cookie
//!
//! `rgsd_session=<64 hex digits>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<absolute>`, plus
//! `Secure` when the request came over HTTPS (a TLS-terminating proxy saying so with
//! `X-Forwarded-Proto: https`) or when `RGSD_COOKIE_SECURE=1` is set. The session id is random
//! (OS randomness, 256 bits) and only its SHA-256 is stored, as for tokens.
//!
//! # Expiry
//!
//! [`SessionPolicy::default`]: a session ends after 2 hours without a request (the idle expiry;
//! the pages poll, so an open page stays signed in) and 12 hours after sign-in whatever happens
//! (the absolute expiry: a working day). Both are measured with the injectable clock.
//!
//! # CSRF
//!
//! A request authenticated by the cookie that changes something (any method but GET, HEAD and
//! OPTIONS) must carry `X-CSRF-Token` with the value returned at sign-in and by
//! `GET /api/session`, or it is refused with 403. The value is derived from the session id
//! (SHA-256 of it under a different label), so it is not stored and cannot be computed by a page
//! on another site, which can neither read the cookie nor this API's answers. `SameSite=Strict`
//! already keeps the cookie off cross-site requests; the token is the second lock. Bearer-token
//! requests need no CSRF token: a browser never adds a bearer header by itself. Sign-in itself
//! refuses a request whose `Origin` names another site.
//!
//! # Failed sign-ins
//!
//! Rate-limited per user name and per source address ([`SessionPolicy::failures_per_user`] and
//! [`SessionPolicy::failures_per_address`] per [`SessionPolicy::failure_window`]); over the
//! limit, sign-in answers 429 with `Retry-After` without checking the password. An attempt is
//! counted when it starts and taken back if it succeeds, so concurrent guesses cannot overrun
//! the limit. The limiter's
//! memory is bounded ([`SessionPolicy::limiter_entries`] keys per kind; when full, expired
//! windows are dropped, then the oldest). An unknown user name is checked against a dummy hash,
//! so it costs the same time as a wrong password, and gets the same answer. Every sign-in,
//! sign-out and failure is audited (`session.sign_in`, `session.sign_out`,
//! `session.sign_in_failed`); passwords and session ids are never logged.
//!
//! A signed-out session's event streams end through the same [`super::tokens::Revocations`] as
//! a revoked token's, under the negated session id; that set grows by one id per sign-out.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};

use crate::store::{PasswordHash, TokenId};

/// The session cookie's name.
pub(super) const SESSION_COOKIE: &str = "rgsd_session";
/// The header that carries the CSRF token.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";
/// The environment variable that forces `Secure` on the cookie (`1`, `true` or `yes`).
pub(super) const SECURE_ENV: &str = "RGSD_COOKIE_SECURE";

/// How long sessions live and how many failed sign-ins are tolerated.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after sign-in, used or not.
    pub absolute: Duration,
    /// Always mark the cookie `Secure` (rgsd is reached over HTTPS through a proxy that does not
    /// send `X-Forwarded-Proto`).
    pub always_secure: bool,
    /// Failed sign-ins for one user name per window before 429.
    pub failures_per_user: u32,
    /// Failed sign-ins from one address per window before 429 (higher: people behind one NAT
    /// or proxy share an address).
    pub failures_per_address: u32,
    pub failure_window: Duration,
    /// Most user names, and most addresses, the limiter remembers.
    pub limiter_entries: usize,
    /// Most password checks running at once (each takes 19 MiB and tens of milliseconds).
    pub concurrent_checks: usize,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(2 * 3600),
            absolute: Duration::from_secs(12 * 3600),
            always_secure: false,
            failures_per_user: 5,
            failures_per_address: 20,
            failure_window: Duration::from_secs(60),
            limiter_entries: 10_000,
            concurrent_checks: 4,
        }
    }
}

impl SessionPolicy {
    /// The defaults, with `always_secure` from `RGSD_COOKIE_SECURE`.
    pub fn from_env() -> Self {
        let always_secure = std::env::var(SECURE_ENV)
            .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        Self {
            always_secure,
            ..Self::default()
        }
    }
}

/// The session machinery of one server: its policy, the failed-sign-in limiter and the bound on
/// concurrent password checks. Installed on the router as an extension.
#[derive(Debug)]
pub(super) struct Sessions {
    pub policy: SessionPolicy,
    limiter: Mutex<Limiter>,
    pub(super) checks: tokio::sync::Semaphore,
}

impl Sessions {
    pub(super) fn new(policy: SessionPolicy) -> Self {
        let limiter = Limiter {
            users: Counter::new(policy.failures_per_user, policy.limiter_entries),
            addresses: Counter::new(policy.failures_per_address, policy.limiter_entries),
            window_ms: i64::try_from(policy.failure_window.as_millis()).unwrap_or(i64::MAX),
        };
        // Computed now, not on the first unknown user (whose answer would otherwise be slower).
        let _ = dummy_hash();
        Self {
            checks: tokio::sync::Semaphore::new(policy.concurrent_checks.max(1)),
            limiter: Mutex::new(limiter),
            policy,
        }
    }

    pub(super) fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        // A panic while holding the lock leaves counts that are still counts.
        self.limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// ---------------------------------------------------------------------------------------------
// The limiter

/// Failed sign-ins per key in fixed windows: a key that reached the limit is refused until its
/// window ends.
#[derive(Debug)]
struct Counter {
    limit: u32,
    cap: usize,
    /// Key → (window start in ms, failures in it).
    entries: HashMap<String, (i64, u32)>,
}

impl Counter {
    fn new(limit: u32, cap: usize) -> Self {
        Self {
            limit,
            cap: cap.max(1),
            entries: HashMap::new(),
        }
    }

    /// How long `key` is still refused, if it is.
    fn blocked(&self, key: &str, now: i64, window: i64) -> Option<i64> {
        let &(start, failures) = self.entries.get(key)?;
        let end = start.saturating_add(window);
        (failures >= self.limit && now < end).then_some(end - now)
    }

    fn fail(&mut self, key: &str, now: i64, window: i64) {
        if let Some((start, failures)) = self.entries.get_mut(key) {
            if now >= start.saturating_add(window) {
                *start = now;
                *failures = 0;
            }
            *failures = failures.saturating_add(1);
            return;
        }
        if self.entries.len() >= self.cap {
            self.entries
                .retain(|_, (start, _)| now < start.saturating_add(window));
        }
        if self.entries.len() >= self.cap {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (start, _))| *start)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(key.to_owned(), (now, 1));
    }

    fn clear(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Takes one failure back (an attempt counted in advance that succeeded).
    fn forgive(&mut self, key: &str) {
        if let Some((_, failures)) = self.entries.get_mut(key) {
            *failures = failures.saturating_sub(1);
        }
    }
}

#[derive(Debug)]
pub(super) struct Limiter {
    users: Counter,
    addresses: Counter,
    window_ms: i64,
}

impl Limiter {
    /// Seconds to wait, when `user` or `address` is over its limit (rounded up, at least 1).
    fn retry_after(&self, user: &str, address: Option<&str>, now: i64) -> Option<u64> {
        let by_user = self.users.blocked(user, now, self.window_ms);
        let by_address = address.and_then(|a| self.addresses.blocked(a, now, self.window_ms));
        let ms = by_user.max(by_address)?;
        Some(u64::try_from(ms).unwrap_or(0).div_ceil(1000).max(1))
    }

    /// Admits an attempt unless `user` or `address` is over its limit, and counts it as a failure
    /// until [`Limiter::succeeded`] says otherwise: checking and counting under one lock means a
    /// burst of concurrent guesses cannot all pass the check before any of them is counted.
    pub(super) fn begin(&mut self, user: &str, address: Option<&str>, now: i64) -> Result<(), u64> {
        if let Some(retry) = self.retry_after(user, address, now) {
            return Err(retry);
        }
        self.users.fail(user, now, self.window_ms);
        if let Some(a) = address {
            self.addresses.fail(a, now, self.window_ms);
        }
        Ok(())
    }

    /// The attempt admitted by [`Limiter::begin`] succeeded: the user's failures are forgotten
    /// and the address's count takes this attempt back.
    pub(super) fn succeeded(&mut self, user: &str, address: Option<&str>) {
        self.users.clear(user);
        if let Some(a) = address {
            self.addresses.forgive(a);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cookie and CSRF helpers

/// The session id from the `Cookie` header(s), if any.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == SESSION_COOKIE).then(|| v.trim().to_owned())
        })
}

/// The CSRF token of a session: SHA-256 of the session id under its own label, as hex.
pub(super) fn csrf_token(session_secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"rgsd csrf token\n");
    h.update(session_secret.as_bytes());
    hex::encode(h.finalize())
}

/// Whether the request carries the right CSRF token. Compares digests, so the time taken does
/// not depend on how many leading characters of a guess are right.
pub(super) fn csrf_ok(headers: &HeaderMap, session_secret: &str) -> bool {
    let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    Sha256::digest(sent.trim().as_bytes()) == Sha256::digest(csrf_token(session_secret).as_bytes())
}

/// Whether the request reached rgsd over HTTPS (as a TLS-terminating proxy reports it).
pub(super) fn over_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    forwarded_proto || forwarded
}

pub(super) fn cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    // Hex, digits and fixed ASCII: always a valid header value.
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("rgsd_session=; Max-Age=0"))
}

/// Whether `Origin`, when present, names this server (the `Host` the browser used).
pub(super) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin.to_str().ok().is_some_and(|o| {
        o.split_once("://")
            .is_some_and(|(_, rest)| rest.trim_end_matches('/').eq_ignore_ascii_case(host))
    })
}

/// A hash of a random password with the same parameters as real ones: unknown users are
/// checked against it so that they take as long as known ones.
pub(super) fn dummy_hash() -> Option<&'static PasswordHash> {
    static DUMMY: OnceLock<Option<PasswordHash>> = OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).ok()?;
            PasswordHash::new(&hex::encode(bytes)).ok()
        })
        .as_ref()
}

/// The limiter's key for a user name: the name, or one shared key for names too long to be one
/// (so that the limiter's memory stays bounded in bytes, not only in entries).
pub(super) fn limiter_key(user: &str) -> &str {
    if user.len() <= 256 {
        user
    } else {
        "(too long)"
    }
}

/// What a failed sign-in is recorded under: the name tried when it looks like a user name,
/// otherwise a placeholder (people type their password into the wrong field).
pub(super) fn audit_name(user: &str) -> String {
    if crate::store::users::is_user_name(user) && user.len() <= 256 {
        user.to_owned()
    } else {
        "(not a SIP URI)".to_owned()
    }
}

/// The id under which a session's server-sent event streams wait for their end: the negated
/// session id, so it never equals an API token's (positive) id.
pub(super) fn stream_key(id: crate::store::SessionId) -> TokenId {
    TokenId(id.0.saturating_neg())
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 60_000;

    #[test]
    fn a_key_is_refused_after_the_limit_until_its_window_ends() {
        let mut c = Counter::new(3, 100);
        for t in [0, 10, 20] {
            assert_eq!(c.blocked("u", t, W), None);
            c.fail("u", t, W);
        }
        assert_eq!(c.blocked("u", 30, W), Some(W - 30));
        assert_eq!(c.blocked("v", 30, W), None);
        assert_eq!(c.blocked("u", W, W), None);
        // A failure after the window starts a new one.
        c.fail("u", W + 5, W);
        assert_eq!(c.blocked("u", W + 6, W), None);
        c.clear("u");
        assert!(c.entries.is_empty());
    }

    #[test]
    fn the_limiter_forgets_expired_then_oldest_keys_when_full() {
        let mut c = Counter::new(1, 3);
        c.fail("a", 0, W);
        c.fail("b", 10, W);
        c.fail("c", 20, W);
        c.fail("d", 30, W);
        assert_eq!(c.entries.len(), 3);
        assert!(!c.entries.contains_key("a"), "the oldest goes");
        c.fail("e", W + 25, W);
        // b and c expired at W+10 and W+20; d is still in its window.
        assert_eq!(c.entries.len(), 2);
        assert!(c.entries.contains_key("d") && c.entries.contains_key("e"));
    }

    #[test]
    fn retry_after_is_whole_seconds_for_the_later_of_user_and_address() {
        let mut l = Limiter {
            users: Counter::new(1, 10),
            addresses: Counter::new(2, 10),
            window_ms: W,
        };
        assert_eq!(l.begin("u", Some("1.2.3.4"), 0), Ok(()));
        assert_eq!(l.retry_after("u", None, 500), Some(60));
        assert_eq!(l.begin("u", None, 500), Err(60));
        assert_eq!(l.retry_after("x", Some("1.2.3.4"), 500), None);
        assert_eq!(l.begin("y", Some("1.2.3.4"), 20_000), Ok(()));
        assert_eq!(l.retry_after("x", Some("1.2.3.4"), 30_000), Some(30));
        // A success takes its own count back: the address is below its limit again, and the
        // user's failures are forgotten.
        l.succeeded("y", Some("1.2.3.4"));
        assert_eq!(l.retry_after("x", Some("1.2.3.4"), 30_000), None);
        l.succeeded("u", None);
        assert_eq!(l.begin("u", None, 30_000), Ok(()));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; rgsd_session=abc ; b=2")]);
        assert_eq!(session_cookie(&h).as_deref(), Some("abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "rgsd_session=def")]);
        assert_eq!(session_cookie(&h).as_deref(), Some("def"));
        assert_eq!(
            session_cookie(&headers(&[("cookie", "xrgsd_session=1")])),
            None
        );
    }

    #[test]
    fn csrf_tokens_are_per_session_and_checked_exactly() {
        let t = csrf_token("s1");
        assert_ne!(t, csrf_token("s2"));
        assert_ne!(t, "s1");
        assert!(csrf_ok(&headers(&[("x-csrf-token", &t)]), "s1"));
        assert!(!csrf_ok(&headers(&[("x-csrf-token", &t)]), "s2"));
        assert!(!csrf_ok(&headers(&[("x-csrf-token", &t[..63])]), "s1"));
        assert!(!csrf_ok(&headers(&[]), "s1"));
    }

    #[test]
    fn cookies_carry_the_flags_and_secure_only_when_asked() {
        let c = cookie("ab", 60, false);
        assert_eq!(
            c.to_str().unwrap(),
            "rgsd_session=ab; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        assert!(
            cookie("ab", 60, true)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        assert!(over_tls(&headers(&[("x-forwarded-proto", "https")])));
        assert!(over_tls(&headers(&[(
            "forwarded",
            "for=1.2.3.4;proto=https"
        )])));
        assert!(!over_tls(&headers(&[("x-forwarded-proto", "http")])));
    }

    #[test]
    fn sign_in_from_another_site_is_refused() {
        assert!(same_origin(&headers(&[("host", "rgsd.example:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "rgsd.example:8080"),
            ("origin", "https://rgsd.example:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "rgsd.example:8080"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[(
            "origin",
            "https://evil.example"
        )])));
    }

    #[test]
    fn limiter_keys_are_short() {
        assert_eq!(limiter_key("sip:ann@example.com"), "sip:ann@example.com");
        assert_eq!(limiter_key(&"x".repeat(100_000)), "(too long)");
    }

    #[test]
    fn failed_sign_ins_are_audited_under_a_sip_uri_only() {
        assert_eq!(audit_name("sip:ann@example.com"), "sip:ann@example.com");
        assert_eq!(audit_name("hunter2hunter2"), "(not a SIP URI)");
    }
}
