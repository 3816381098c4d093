//! Registering workflow URIs with an upstream registrar (`[[registration]]`).
//!
//! [`Registrar`] is the pure part: it builds each REGISTER (Call-ID, From tag and CSeq kept
//! across refreshes, RFC 3261 §10.2.4), answers 401/407 challenges with RFC 7616 digest (MD5 or
//! SHA-256, `qop=auth`, computed by the `digest_auth` crate), and says what to do next: retry at
//! once with credentials, refresh before expiry, or back off after a failure. [`run`] drives one
//! registration on an [`Endpoint`] until shutdown, logging each state change.
//!
//! [`Registrations`] owns one such task per `[[registration]]` and applies a new list on reload
//! by diffing it with the running one (keyed by AOR and registrar): a new entry starts, a
//! removed one sends a last REGISTER with `Expires: 0` (RFC 3261 §10.2.2) and stops, a changed
//! one (user name, password, expiry) registers again with its new settings, an unchanged one
//! keeps running untouched.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::endpoint::{Endpoint, RequestError};
use super::message::{Headers, Method, NameAddr, Request, Response};
use crate::config::model::{Registration, Transport};
use crate::util::random_token;

/// First back-off after a failure; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Challenges answered in a row before giving up (a wrong password loops otherwise).
const MAX_CHALLENGES: u32 = 2;

/// Where a registration stands (logged on every change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    Unregistered,
    /// A REGISTER is in flight (first, refresh, or with credentials).
    Registering,
    /// The registrar accepted us for this long.
    Registered {
        expires: Duration,
    },
    /// The last attempt failed; the next one waits.
    Failed {
        reason: String,
        retry_in: Duration,
    },
}

/// What the driver does after a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send the next REGISTER now (with the credentials just computed).
    SendNow,
    /// Registered: refresh after this long.
    RefreshIn(Duration),
    /// Failed: try again after this long.
    RetryIn(Duration),
}

/// One registration's protocol state.
#[derive(Debug)]
pub struct Registrar {
    config: Registration,
    call_id: String,
    from_tag: String,
    cseq: u32,
    /// `Authorization` or `Proxy-Authorization` for the next request.
    credentials: Option<(&'static str, String)>,
    challenges_in_a_row: u32,
    failures_in_a_row: u32,
    state: RegistrationState,
}

impl Registrar {
    pub fn new(config: Registration, host: &str) -> Self {
        Self {
            config,
            call_id: format!("{}@{host}", random_token(20)),
            from_tag: random_token(10),
            cseq: 0,
            credentials: None,
            challenges_in_a_row: 0,
            failures_in_a_row: 0,
            state: RegistrationState::Unregistered,
        }
    }

    pub fn state(&self) -> &RegistrationState {
        &self.state
    }

    pub fn config(&self) -> &Registration {
        &self.config
    }

    /// From now on, requests remove our binding instead of refreshing it: `Expires: 0`
    /// (RFC 3261 §10.2.2), on the same Call-ID with the next CSeq. A challenge to it is
    /// answered like any other.
    pub fn unregister(&mut self) {
        self.config.expires = Duration::ZERO;
        self.challenges_in_a_row = 0;
    }

    /// The next REGISTER (without Via; the endpoint adds it).
    pub fn request(&mut self, contact: &str) -> Request {
        self.cseq = self.cseq.wrapping_add(1);
        self.state = RegistrationState::Registering;
        let aor = NameAddr {
            display: String::new(),
            uri: self.config.aor.to_string(),
            params: Vec::new(),
        };
        let mut headers = Headers::new();
        headers.push("Max-Forwards", "70");
        headers.push("From", aor.clone().with_tag(&self.from_tag).to_string());
        headers.push("To", aor.to_string());
        headers.push("Call-ID", self.call_id.as_str());
        headers.push("CSeq", format!("{} REGISTER", self.cseq));
        headers.push("Contact", contact);
        headers.push("Expires", self.config.expires.as_secs().to_string());
        headers.push("User-Agent", "rgsd");
        if let Some((name, value)) = &self.credentials {
            headers.push(*name, value.as_str());
        }
        Request {
            method: Method::Register,
            uri: self.config.registrar.to_string(),
            headers,
            body: Bytes::new(),
        }
    }

    /// Takes the final response to the last REGISTER.
    pub fn on_response(&mut self, response: &Response) -> Next {
        match response.status {
            200..=299 => {
                self.challenges_in_a_row = 0;
                self.failures_in_a_row = 0;
                let expires = granted_expires(response).unwrap_or(self.config.expires);
                self.state = RegistrationState::Registered { expires };
                Next::RefreshIn(refresh_after(expires))
            }
            401 | 407 => {
                let (challenge_header, answer_header) = if response.status == 401 {
                    ("WWW-Authenticate", "Authorization")
                } else {
                    ("Proxy-Authenticate", "Proxy-Authorization")
                };
                self.challenges_in_a_row += 1;
                if self.challenges_in_a_row > MAX_CHALLENGES {
                    return self.fail("credentials refused".into());
                }
                let Some(challenge) = response.headers.get(challenge_header) else {
                    return self.fail(format!("{} without a challenge", response.status));
                };
                match self.answer(challenge) {
                    Ok(value) => {
                        self.credentials = Some((answer_header, value));
                        Next::SendNow
                    }
                    Err(e) => self.fail(format!("unusable challenge: {e}")),
                }
            }
            423 => {
                // Interval Too Brief: take the registrar's Min-Expires and try again at once.
                if let Some(min) = response
                    .headers
                    .get("Min-Expires")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    self.config.expires = Duration::from_secs(min);
                    return Next::SendNow;
                }
                self.fail("423 without Min-Expires".into())
            }
            status => self.fail(format!("registrar answered {status}")),
        }
    }

    /// The REGISTER got no answer at all (or the transport failed).
    pub fn on_no_response(&mut self, why: &str) -> Next {
        self.fail(why.to_owned())
    }

    fn fail(&mut self, reason: String) -> Next {
        self.challenges_in_a_row = 0;
        self.credentials = None;
        let shift = self.failures_in_a_row.min(8);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let retry_in = (MIN_BACKOFF * 2u32.pow(shift)).min(MAX_BACKOFF);
        self.state = RegistrationState::Failed { reason, retry_in };
        Next::RetryIn(retry_in)
    }

    fn answer(&self, challenge: &str) -> Result<String, digest_auth::Error> {
        let mut prompt = digest_auth::parse(challenge)?;
        let context = digest_auth::AuthContext::new_with_method(
            self.config.username.as_str(),
            self.config.password.expose(),
            self.config.registrar.as_str(),
            Option::<&[u8]>::None,
            digest_auth::HttpMethod::from("REGISTER"),
        );
        Ok(prompt.respond(&context)?.to_header_string())
    }
}

/// The expiry the registrar granted: our Contact's `expires` param, else the Expires header.
fn granted_expires(response: &Response) -> Option<Duration> {
    let from_contact = response.headers.get_list("Contact").find_map(|c| {
        let na = NameAddr::parse(c).ok()?;
        na.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("expires"))
            .and_then(|(_, v)| v.as_deref()?.trim().parse::<u64>().ok())
    });
    from_contact
        .or_else(|| response.headers.get("Expires")?.trim().parse().ok())
        .map(Duration::from_secs)
}

/// Refresh a minute before expiry for long registrations, at half-time for short ones.
fn refresh_after(expires: Duration) -> Duration {
    if expires > Duration::from_secs(120) {
        expires - Duration::from_secs(60)
    } else {
        (expires / 2).max(Duration::from_secs(1))
    }
}

/// Why a registration task is asked to stop before shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The entry left the configuration: remove the binding (`Expires: 0`), then end.
    Remove,
    /// The entry changed: end quietly, its successor registers the same contact again.
    Replace,
}

/// Keeps one registration alive until `shutdown` or until `stop` says otherwise
/// ([`Stop::Remove`] unregisters first), logging each state change. A dropped sender counts as
/// [`Stop::Replace`].
async fn run_until(
    endpoint: Endpoint,
    config: Registration,
    shutdown: CancellationToken,
    mut stop: oneshot::Receiver<Stop>,
) {
    let target = super::message::parse_uri(config.registrar.as_str()).ok();
    let transport = match target {
        Some(t) if t.tls => Transport::Tls,
        Some(t) if t.tcp => Transport::Tcp,
        _ => Transport::Udp,
    };
    let endpoint_contact = endpoint.contact(transport);
    let host = endpoint_contact
        .trim_start_matches("<sip:rgsd@")
        .split(':')
        .next()
        .unwrap_or("rgsd")
        .to_owned();
    let contact = contact_for(&endpoint_contact, config.aor.as_str());
    let mut registrar = Registrar::new(config, &host);
    let aor = registrar.config().aor.clone();
    let mut last_state = registrar.state().clone();
    let why = loop {
        let request = registrar.request(&contact);
        let target = registrar.config().registrar.clone();
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            why = &mut stop => break why.unwrap_or(Stop::Replace),
            result = endpoint.request(request, &target) => match result {
                Ok(response) => registrar.on_response(&response),
                Err(RequestError::Timeout) => registrar.on_no_response("no response from registrar"),
                Err(e) => registrar.on_no_response(&e.to_string()),
            },
        };
        if *registrar.state() != last_state {
            last_state = registrar.state().clone();
            match &last_state {
                RegistrationState::Failed { .. } => {
                    tracing::warn!(%aor, state = ?last_state, "registration");
                }
                _ => tracing::info!(%aor, state = ?last_state, "registration"),
            }
        }
        let wait = match next {
            Next::SendNow => continue,
            Next::RefreshIn(d) | Next::RetryIn(d) => d,
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            why = &mut stop => break why.unwrap_or(Stop::Replace),
            () = tokio::time::sleep(wait) => {}
        }
    };
    if why == Stop::Replace {
        return;
    }
    registrar.unregister();
    // The first request, and one more per challenge answered.
    for _ in 0..=MAX_CHALLENGES {
        let request = registrar.request(&contact);
        let target = registrar.config().registrar.clone();
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            result = endpoint.request(request, &target) => result,
        };
        match result {
            Ok(response) => match registrar.on_response(&response) {
                Next::SendNow => continue,
                Next::RefreshIn(_) => {
                    tracing::info!(%aor, "registration removed (unregistered)");
                    return;
                }
                Next::RetryIn(_) => break,
            },
            Err(e) => {
                tracing::warn!(%aor, error = %e, "registration removed; unregistering failed");
                return;
            }
        }
    }
    tracing::warn!(%aor, state = ?registrar.state(), "registration removed; the registrar refused to unregister it");
}

/// The Contact registered for `aor`: the endpoint's (`<sip:rgsd@HOST:PORT>`) with the AOR's user
/// part in place of `rgsd`. A registrar retargets a call for the AOR to this contact
/// (RFC 3261 §10.2, §16.5), so the Request-URI rgsd receives still names the workflow by its
/// user (docs/architecture.md: the workflow is found by user and host, or user alone).
fn contact_for(endpoint_contact: &str, aor: &str) -> String {
    match crate::config::uri::user_host(aor) {
        Some((user, _)) => endpoint_contact.replacen("rgsd@", &format!("{user}@"), 1),
        None => endpoint_contact.to_owned(),
    }
}

/// The running registrations: one task per `[[registration]]`, applied again on every reload.
pub(crate) struct Registrations {
    endpoint: Endpoint,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    running: Vec<Running>,
}

struct Running {
    config: Registration,
    stop: oneshot::Sender<Stop>,
}

/// What [`Registrations::apply`] did, by count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub started: usize,
    pub removed: usize,
    /// Changed settings: registering again.
    pub restarted: usize,
    pub unchanged: usize,
}

/// Same entry: same address of record at the same registrar.
fn same_entry(a: &Registration, b: &Registration) -> bool {
    a.aor == b.aor && a.registrar == b.registrar
}

/// Same settings too (the password compared, never logged).
fn same_settings(a: &Registration, b: &Registration) -> bool {
    same_entry(a, b)
        && a.username == b.username
        && a.password.expose() == b.password.expose()
        && a.expires == b.expires
}

impl Registrations {
    /// No registration yet; [`Registrations::apply`] starts them. Tasks are spawned on
    /// `tasks` (so whoever stops the daemon waits for them) and end at `shutdown`.
    pub(crate) fn new(endpoint: Endpoint, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            endpoint,
            tasks,
            shutdown,
            running: Vec::new(),
        }
    }

    /// Makes the running registrations those of `wanted`: starts new entries, unregisters and
    /// stops removed ones, registers changed ones again, leaves the others alone. Returns what
    /// it did; each change is logged with its address of record.
    pub(crate) fn apply(&mut self, wanted: &[Registration]) -> Applied {
        let mut applied = Applied::default();
        let mut kept = Vec::with_capacity(wanted.len());
        for old in std::mem::take(&mut self.running) {
            match wanted.iter().find(|w| same_entry(w, &old.config)) {
                Some(w) if same_settings(w, &old.config) => {
                    applied.unchanged += 1;
                    kept.push(old);
                }
                Some(_) => {
                    applied.restarted += 1;
                    tracing::info!(aor = %old.config.aor, "registration changed; registering again");
                    let _ = old.stop.send(Stop::Replace);
                }
                None => {
                    applied.removed += 1;
                    tracing::info!(aor = %old.config.aor, "registration removed; unregistering");
                    let _ = old.stop.send(Stop::Remove);
                }
            }
        }
        self.running = kept;
        for w in wanted {
            if self.running.iter().any(|r| same_entry(&r.config, w)) {
                continue;
            }
            let (stop, stopped) = oneshot::channel();
            self.tasks.spawn(run_until(
                self.endpoint.clone(),
                w.clone(),
                self.shutdown.clone(),
                stopped,
            ));
            self.running.push(Running {
                config: w.clone(),
                stop,
            });
        }
        // Every wanted entry is now unchanged, restarted or new.
        applied.started = wanted.len() - applied.unchanged - applied.restarted;
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{Secret, SipUri};

    #[test]
    fn the_contact_carries_the_aors_user_so_a_retargeted_call_finds_the_workflow() {
        assert_eq!(
            contact_for("<sip:rgsd@192.0.2.10:5060>", "sip:sales@pbx.example.com"),
            "<sip:sales@192.0.2.10:5060>"
        );
        assert_eq!(
            contact_for(
                "<sip:rgsd@192.0.2.10:5062;transport=tcp>",
                "sip:+14255550100@trunk.example.net;user=phone"
            ),
            "<sip:+14255550100@192.0.2.10:5062;transport=tcp>"
        );
        // An AOR without a user part keeps rgsd's.
        assert_eq!(
            contact_for("<sip:rgsd@192.0.2.10:5060>", "sip:pbx.example.com"),
            "<sip:rgsd@192.0.2.10:5060>"
        );
    }

    fn registrar() -> Registrar {
        Registrar::new(
            Registration {
                aor: SipUri("sip:sales@127.0.0.1".into()),
                registrar: SipUri("sip:127.0.0.1:5080".into()),
                username: "sales".into(),
                password: Secret::new("s3cret".into()),
                expires: Duration::from_secs(600),
            },
            "127.0.0.1",
        )
    }

    fn reply(to: &Request, status: u16, extra: &[(&str, &str)]) -> Response {
        let mut req = to.clone();
        req.headers
            .push_front("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx");
        let mut resp = Response::to_request(&req, status, Some("reg"));
        for (n, v) in extra {
            resp.headers.push(*n, *v);
        }
        resp
    }

    /// Splits `Digest a="b", c=d` into pairs.
    fn params(header: &str) -> std::collections::HashMap<String, String> {
        header
            .trim_start_matches("Digest ")
            .split(", ")
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim_matches('"').to_owned()))
            .collect()
    }

    #[test]
    fn challenge_answered_with_sha256_digest_then_refresh_before_expiry() {
        let mut r = registrar();
        let first = r.request("<sip:rgsd@127.0.0.1:5060>");
        assert_eq!(first.headers.get("CSeq"), Some("1 REGISTER"));
        assert!(first.headers.get("Authorization").is_none());
        let challenge = reply(
            &first,
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=\"rgsd-test\", nonce=\"n0nce\", qop=\"auth\", algorithm=SHA-256",
            )],
        );
        assert_eq!(r.on_response(&challenge), Next::SendNow);
        let second = r.request("<sip:rgsd@127.0.0.1:5060>");
        assert_eq!(second.headers.get("CSeq"), Some("2 REGISTER"));
        assert_eq!(second.headers.get("Call-ID"), first.headers.get("Call-ID"));
        let auth = params(second.headers.get("Authorization").unwrap());
        assert_eq!(auth["username"], "sales");
        assert_eq!(auth["realm"], "rgsd-test");
        assert_eq!(auth["uri"], "sip:127.0.0.1:5080");
        assert_eq!(auth["qop"], "auth");
        assert_eq!(auth["algorithm"], "SHA-256");
        // Recompute RFC 7616 §3.4.1 by hand.
        use sha2::{Digest, Sha256};
        let h = |s: String| hex::encode(Sha256::digest(s.as_bytes()));
        let ha1 = h("sales:rgsd-test:s3cret".into());
        let ha2 = h("REGISTER:sip:127.0.0.1:5080".into());
        let expected = h(format!(
            "{ha1}:n0nce:{}:{}:auth:{ha2}",
            auth["nc"], auth["cnonce"]
        ));
        assert_eq!(auth["response"], expected);

        let ok = reply(
            &second,
            200,
            &[("Contact", "<sip:rgsd@127.0.0.1:5060>;expires=300")],
        );
        assert_eq!(
            r.on_response(&ok),
            Next::RefreshIn(Duration::from_secs(240))
        );
        assert_eq!(
            r.state(),
            &RegistrationState::Registered {
                expires: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn unregister_sends_expires_0_on_the_same_call_id_and_answers_a_challenge() {
        let mut r = registrar();
        let contact = "<sip:rgsd@127.0.0.1:5060>";
        let first = r.request(contact);
        assert_eq!(first.headers.get("Expires"), Some("600"));
        let ok = reply(&first, 200, &[]);
        assert_eq!(
            r.on_response(&ok),
            Next::RefreshIn(Duration::from_secs(540))
        );
        r.unregister();
        let bye = r.request(contact);
        assert_eq!(bye.headers.get("Expires"), Some("0"));
        assert_eq!(bye.headers.get("CSeq"), Some("2 REGISTER"));
        assert_eq!(bye.headers.get("Call-ID"), first.headers.get("Call-ID"));
        assert_eq!(bye.headers.get("Contact"), Some(contact));
        let challenge = reply(
            &bye,
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=\"rgsd-test\", nonce=\"n1\", qop=\"auth\"",
            )],
        );
        assert_eq!(r.on_response(&challenge), Next::SendNow);
        let again = r.request(contact);
        assert_eq!(again.headers.get("Expires"), Some("0"));
        assert!(again.headers.get("Authorization").is_some());
    }

    #[test]
    fn wrong_password_loop_stops_and_backs_off_exponentially() {
        let mut r = registrar();
        let challenge = |req: &Request| {
            reply(
                req,
                401,
                &[(
                    "WWW-Authenticate",
                    "Digest realm=\"x\", nonce=\"y\", algorithm=MD5",
                )],
            )
        };
        let req = r.request("<sip:c>");
        assert_eq!(r.on_response(&challenge(&req)), Next::SendNow);
        let req = r.request("<sip:c>");
        assert_eq!(r.on_response(&challenge(&req)), Next::SendNow);
        let req = r.request("<sip:c>");
        assert_eq!(
            r.on_response(&challenge(&req)),
            Next::RetryIn(Duration::from_secs(2))
        );
        assert_eq!(
            r.on_no_response("timeout"),
            Next::RetryIn(Duration::from_secs(4))
        );
        assert_eq!(
            r.on_no_response("timeout"),
            Next::RetryIn(Duration::from_secs(8))
        );
        for _ in 0..10 {
            r.on_no_response("timeout");
        }
        assert_eq!(r.on_no_response("timeout"), Next::RetryIn(MAX_BACKOFF));
    }

    #[test]
    fn short_expiry_refreshes_at_half_time_and_423_adopts_min_expires() {
        assert_eq!(
            refresh_after(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        let mut r = registrar();
        let req = r.request("<sip:c>");
        assert_eq!(
            r.on_response(&reply(&req, 423, &[("Min-Expires", "1800")])),
            Next::SendNow
        );
        let req = r.request("<sip:c>");
        assert_eq!(req.headers.get("Expires"), Some("1800"));
    }
}
