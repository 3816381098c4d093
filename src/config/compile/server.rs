//! `[server]` and `[[registration]]`: listeners, ports, database, secrets.

use super::*;

impl Compiler<'_> {
    pub(super) fn server(&mut self, raw: &RawConfig) -> Option<Server> {
        let Some(server) = &raw.server else {
            self.error(
                &(0..0),
                "server",
                "missing [server] table; it needs at least sip_listen, advertised_host, database and trusted_peers",
            );
            return None;
        };
        let span = server.span();
        let s: &RawServer = server.get_ref();
        let key = "server";

        let sip_listen = self
            .required(&s.sip_listen, &span, key, "sip_listen")
            .and_then(|list| {
                let list_key = "server.sip_listen";
                if list.get_ref().is_empty() {
                    self.error(
                        &list.span(),
                        list_key,
                        "list at least one listener, e.g. [\"udp:0.0.0.0:5060\"]",
                    );
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in list.get_ref().iter().enumerate() {
                    let item_key = format!("{list_key}[{i}]");
                    match parse_listen(item.get_ref().trim()) {
                        Ok(l) if out.contains(&l) => {
                            self.error(
                                &item.span(),
                                &item_key,
                                format!("\"{}\" is listed twice", item.get_ref()),
                            );
                            ok = false;
                        }
                        Ok(l) => out.push(l),
                        Err(e) => {
                            self.error(&item.span(), &item_key, e);
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            });

        let advertised_host = self
            .required(&s.advertised_host, &span, key, "advertised_host")
            .and_then(|h| {
                let text = h.get_ref().trim();
                if is_host(text) {
                    Some(text.to_owned())
                } else {
                    self.error(
                        &h.span(),
                        "server.advertised_host",
                        format!("\"{text}\" is not a host name or IP address (write it without scheme or port)"),
                    );
                    None
                }
            });

        let rtp_ports = match &s.rtp_ports {
            None => Some(RTP_PORTS_DEFAULT),
            Some(ports) => self.rtp_ports(ports),
        };

        let http_listen = match &s.http_listen {
            None => HTTP_LISTEN_DEFAULT.parse().ok(),
            Some(h) => h.get_ref().trim().parse().map_err(|_| {
                self.error(
                    &h.span(),
                    "server.http_listen",
                    format!("\"{}\" is not an IP address and port; write e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"", h.get_ref()),
                );
            }).ok(),
        };

        let database = self
            .required(&s.database, &span, key, "database")
            .and_then(|d| self.database(d));

        let default_music_on_hold = match &s.default_music_on_hold {
            None => Some(None),
            Some(f) => self.wav_file(f, "server.default_music_on_hold").map(Some),
        };

        let grace = self.duration(
            s.agent_ringback_grace_period.as_ref(),
            "server.agent_ringback_grace_period",
            &GRACE,
            Some(GRACE_DEFAULT),
        );

        let drain_limit = self.duration(
            s.drain_limit.as_ref(),
            "server.drain_limit",
            &(Duration::ZERO..=Duration::from_secs(3600)),
            Some(Duration::from_secs(30)),
        );

        let call_journal = match &s.call_journal {
            None => Some(resolve_path(self.base, CALL_JOURNAL_DEFAULT)),
            Some(f) if f.get_ref().trim().is_empty() => {
                self.error(
                    &f.span(),
                    "server.call_journal",
                    "the call journal needs a file; write a path such as \"/var/lib/rgsd/rgsd.journal\"",
                );
                None
            }
            Some(f) => Some(resolve_path(self.base, f.get_ref().trim())),
        };

        let trusted_peers = self
            .required(&s.trusted_peers, &span, key, "trusted_peers")
            .and_then(|list| {
                if list.get_ref().is_empty() {
                    self.warn(
                        &list.span(),
                        "server.trusted_peers",
                        "the list is empty, so every call is refused with 403; list the networks of your PBX or trunk, e.g. [\"192.0.2.0/24\"]",
                    );
                }
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in list.get_ref().iter().enumerate() {
                    let text = item.get_ref().trim();
                    let net = text
                        .parse::<IpNet>()
                        .ok()
                        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from));
                    match net {
                        Some(n) => out.push(n),
                        None => {
                            self.error(
                                &item.span(),
                                &format!("server.trusted_peers[{i}]"),
                                format!("\"{text}\" is not a network or address; write e.g. \"192.0.2.0/24\" or \"192.0.2.10\""),
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some(out)
            });

        let max_calls = match &s.max_calls {
            None => Some(SERVER_MAX_CALLS_DEFAULT),
            Some(m) => self.integer(m, "server.max_calls", &SERVER_MAX_CALLS),
        };

        let sip_rate_limit = match &s.sip_rate_limit {
            None => Some(Some(SipRateLimit::default())),
            Some(limit) => self.sip_rate_limit(limit),
        };

        let dns_servers = self.dns_servers(s.dns_servers.as_ref());
        let outbound_proxy = match &s.outbound_proxy {
            None => Some(None),
            Some(p) => self.outbound_proxy(p).map(Some),
        };
        let srtp = match &s.srtp {
            None => Some(SrtpPolicy::Off),
            Some(p) => self.srtp_policy(p, "server.srtp"),
        };
        let agent_srtp = match &s.agent_srtp {
            None => srtp,
            Some(p) => self.srtp_policy(p, "server.agent_srtp"),
        };

        let min_se = self.duration(
            s.min_se.as_ref(),
            "server.min_se",
            &SESSION_INTERVAL,
            Some(MIN_SE_DEFAULT),
        );
        let session_expires = match &s.session_expires {
            Some(v) if matches!(v.get_ref().trim(), "0" | "off") => Some(None),
            // Unset, it follows a min_se above the usual 1800 s.
            v => self
                .duration(
                    v.as_ref(),
                    "server.session_expires",
                    &SESSION_INTERVAL,
                    Some(SESSION_EXPIRES_DEFAULT.max(min_se.unwrap_or_default())),
                )
                .map(Some),
        };
        if let (Some(Some(se)), Some(min), Some(v)) = (session_expires, min_se, &s.session_expires)
            && se < min
        {
            self.error(
                &v.span(),
                "server.session_expires",
                format!(
                    "{} is below min_se ({}); RFC 4028 forbids offering less than the minimum",
                    v.get_ref(),
                    format_duration(min)
                ),
            );
        }

        let tls = self.tls(s.tls.as_ref());
        if let (Some(listen), Some(tls)) = (&sip_listen, &tls)
            && tls.identity.is_none()
            && let Some(l) = listen.iter().find(|l| l.transport == Transport::Tls)
        {
            let at = s.sip_listen.as_ref().map_or(span.clone(), Spanned::span);
            self.error(
                &s.tls.as_ref().map_or(at, Spanned::span),
                "server.tls",
                format!(
                    "sip_listen has the TLS listener {}, which needs a certificate: add tls = {{ certificate = \"/path/cert.pem\", private_key = \"/path/key.pem\" }} to [server]",
                    l.addr
                ),
            );
        }

        Some(Server {
            sip_listen: sip_listen?,
            advertised_host: advertised_host?,
            rtp_ports: rtp_ports?,
            http_listen: http_listen?,
            database: database?,
            default_music_on_hold: default_music_on_hold?,
            agent_ringback_grace_period: grace?,
            drain_limit: drain_limit?,
            call_journal: call_journal?,
            trusted_peers: trusted_peers?,
            max_calls: max_calls?,
            call_context: s.call_context.unwrap_or(true),
            sip_rate_limit: sip_rate_limit?,
            dns_servers: dns_servers?,
            outbound_proxy: outbound_proxy?,
            srtp: srtp?,
            agent_srtp: agent_srtp?,
            allow_sdes_over_plain_sip: s.allow_sdes_over_plain_sip.unwrap_or(false),
            session_expires: session_expires?,
            min_se: min_se?,
            tls: tls?,
        })
    }

    /// `tls = { certificate, private_key, client_ca, ca, handshake_timeout }`: files read and
    /// checked now (see `config::tls`), a warning when the certificate expires within 30 days.
    fn tls(&mut self, raw: Option<&Spanned<RawTls>>) -> Option<Tls> {
        let key = "server.tls";
        let Some(raw) = raw else {
            return Some(Tls {
                handshake_timeout: TLS_HANDSHAKE_DEFAULT,
                ..Tls::default()
            });
        };
        let t = raw.get_ref();
        let mut ok = true;
        let handshake_timeout = self.duration(
            t.handshake_timeout.as_ref(),
            &join(key, "handshake_timeout"),
            &TLS_HANDSHAKE,
            Some(TLS_HANDSHAKE_DEFAULT),
        );
        let identity = match (&t.certificate, &t.private_key) {
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                let missing = if t.certificate.is_none() {
                    "certificate"
                } else {
                    "private_key"
                };
                self.error(
                    &raw.span(),
                    &join(key, missing),
                    "certificate and private_key go together: name both PEM files",
                );
                ok = false;
                None
            }
            (Some(cert), Some(private_key)) => {
                let (c, k) = (
                    resolve_path(self.base, cert.get_ref().trim()),
                    resolve_path(self.base, private_key.get_ref().trim()),
                );
                let now = crate::clock::Clock::now_utc(&crate::clock::SystemClock);
                match super::super::tls::identity(&c, &k, now) {
                    Ok(id) => {
                        if id.not_after - now < super::super::tls::EXPIRY_WARNING {
                            self.warn(
                                &cert.span(),
                                &join(key, "certificate"),
                                format!(
                                    "the certificate {} expires on {} (within 30 days); renew it and send SIGHUP",
                                    c.display(),
                                    id.not_after.to_rfc3339()
                                ),
                            );
                        }
                        Some(id)
                    }
                    Err(e) => {
                        let (span, which) = match e {
                            super::super::tls::TlsFileError::NoKey { .. }
                            | super::super::tls::TlsFileError::BadKey { .. } => {
                                (private_key.span(), "private_key")
                            }
                            _ => (cert.span(), "certificate"),
                        };
                        self.error(&span, &join(key, which), e.to_string());
                        ok = false;
                        None
                    }
                }
            }
        };
        let mut roots = |this: &mut Self, value: Option<&SString>, name: &str| match value {
            None => None,
            Some(v) => {
                let path = resolve_path(this.base, v.get_ref().trim());
                match super::super::tls::roots(&path) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        this.error(&v.span(), &join(key, name), e.to_string());
                        ok = false;
                        None
                    }
                }
            }
        };
        let client_ca = roots(self, t.client_ca.as_ref(), "client_ca");
        let ca = roots(self, t.ca.as_ref(), "ca");
        if let Some(c) = &t.client_ca
            && t.certificate.is_none()
        {
            self.error(
                &c.span(),
                &join(key, "client_ca"),
                "client_ca checks the clients of tls: listeners, which need certificate and private_key",
            );
            ok = false;
        }
        let handshake_timeout = handshake_timeout?;
        ok.then_some(Tls {
            identity,
            client_ca,
            ca,
            handshake_timeout,
        })
    }

    /// `outbound_proxy = "sip:proxy.example.com"`: a SIP URI whose `;transport=` (if any) is
    /// one rgsd speaks.
    fn outbound_proxy(&mut self, value: &SString) -> Option<SipUri> {
        let key = "server.outbound_proxy";
        let uri = self.sip_uri(value, key)?;
        let transport = uri.as_str().split(';').skip(1).find_map(|p| {
            let (name, v) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("transport")
                .then(|| v.trim().to_ascii_lowercase())
        });
        if let Some(t) = transport
            && !matches!(t.as_str(), "udp" | "tcp" | "tls")
        {
            self.error(
                &value.span(),
                key,
                format!("transport={t} is not a transport rgsd speaks; write udp, tcp or tls"),
            );
            return None;
        }
        Some(uri)
    }

    /// `srtp = "off" | "offer" | "required"`.
    pub(super) fn srtp_policy(&mut self, raw: &SString, key: &str) -> Option<SrtpPolicy> {
        match raw.get_ref().trim() {
            "off" => Some(SrtpPolicy::Off),
            "offer" => Some(SrtpPolicy::Offer),
            "required" => Some(SrtpPolicy::Required),
            other => {
                self.error(
                    &raw.span(),
                    key,
                    format!(
                        "unknown SRTP policy \"{other}\"; use \"off\", \"offer\" or \"required\""
                    ),
                );
                None
            }
        }
    }

    /// SDES (RFC 4568) puts the SRTP keys in the SDP: over plain UDP or TCP anyone on the path
    /// reads them. Offering SRTP needs a TLS listener unless `allow_sdes_over_plain_sip`.
    pub(super) fn sdes_needs_tls(&mut self, raw: &RawConfig, server: &Server) {
        if server.allow_sdes_over_plain_sip
            || server
                .sip_listen
                .iter()
                .any(|l| !matches!(l.transport, Transport::Udp | Transport::Tcp))
        {
            return;
        }
        let Some(raw_server) = &raw.server else {
            return;
        };
        let s = raw_server.get_ref();
        let mut keys: Vec<(Range<usize>, String)> = Vec::new();
        for (word, key) in [(&s.srtp, "srtp"), (&s.agent_srtp, "agent_srtp")] {
            if let Some(w) = word
                && w.get_ref().trim() != "off"
            {
                keys.push((w.span(), format!("server.{key}")));
            }
        }
        for (i, w) in raw.workflow.iter().enumerate() {
            if let Some(p) = &w.get_ref().srtp
                && p.get_ref().trim() != "off"
            {
                keys.push((p.span(), format!("workflow[{i}].srtp")));
            }
        }
        for (span, key) in keys {
            self.error(
                &span,
                &key,
                "SDES puts the SRTP keys in the SIP message, readable by anyone on the path without TLS: add a tls: listener to sip_listen, or set allow_sdes_over_plain_sip = true in [server] if the SIP path is otherwise protected",
            );
        }
    }

    /// `dns_servers = ["192.0.2.53", "127.0.0.1:5353"]`: port 53 unless given.
    fn dns_servers(&mut self, list: Option<&SList>) -> Option<Vec<std::net::SocketAddr>> {
        let Some(list) = list else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in list.get_ref().iter().enumerate() {
            let text = item.get_ref().trim();
            let addr = text.parse::<std::net::SocketAddr>().ok().or_else(|| {
                text.parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| std::net::SocketAddr::new(ip, 53))
            });
            match addr {
                Some(a) => out.push(a),
                None => {
                    self.error(
                        &item.span(),
                        &format!("server.dns_servers[{i}]"),
                        format!("\"{text}\" is not a name server address; write an IP address, with a port if not 53, e.g. \"192.0.2.53\" or \"127.0.0.1:5353\""),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// `sip_rate_limit = { per_second, burst }`: `Some(None)` when `per_second = 0` turns the
    /// limit off.
    fn sip_rate_limit(&mut self, raw: &Spanned<RawSipRateLimit>) -> Option<Option<SipRateLimit>> {
        let key = "server.sip_rate_limit";
        let limit = raw.get_ref();
        let per_second = self
            .required(&limit.per_second, &raw.span(), key, "per_second")
            .and_then(|p| self.integer(p, &join(key, "per_second"), &SIP_RATE_PER_SECOND));
        let burst = limit
            .burst
            .as_ref()
            .map(|b| self.integer(b, &join(key, "burst"), &SIP_RATE_BURST));
        let per_second = per_second?;
        if per_second == 0 {
            if let Some(p) = &limit.per_second {
                self.warn(
                    &p.span(),
                    &join(key, "per_second"),
                    "0 turns the per-source request limit off (burst is ignored): one source can flood the SIP port; keep a limit wherever untrusted networks reach it",
                );
            }
            return Some(None);
        }
        let burst = match burst {
            None => per_second.saturating_mul(SIP_RATE_BURST_FACTOR),
            Some(b) => b?,
        };
        Some(Some(SipRateLimit { per_second, burst }))
    }

    fn rtp_ports(&mut self, ports: &Spanned<Vec<Spanned<i64>>>) -> Option<RangeInclusive<u16>> {
        let key = "server.rtp_ports";
        let [low, high] = ports.get_ref().as_slice() else {
            self.error(
                &ports.span(),
                key,
                "write the inclusive range as [LOW, HIGH], e.g. [20000, 20999]",
            );
            return None;
        };
        let mut bound = |v: &Spanned<i64>, i: usize| {
            let port = u16::try_from(*v.get_ref()).ok().filter(|p| *p >= 1024);
            if port.is_none() {
                self.error(
                    &v.span(),
                    &format!("{key}[{i}]"),
                    format!(
                        "{} is not a usable port; RTP ports go from 1024 to 65535",
                        v.get_ref()
                    ),
                );
            }
            port
        };
        let (low_port, high_port) = (bound(low, 0), bound(high, 1));
        let (low_port, high_port) = (low_port?, high_port?);
        if low_port > high_port {
            self.error(&ports.span(), key, format!("the range [{low_port}, {high_port}] is empty: the first port must not exceed the second"));
            return None;
        }
        if low_port % 2 != 0 || high_port % 2 != 1 {
            self.error(
                &ports.span(),
                key,
                format!("[{low_port}, {high_port}] must hold whole RTP/RTCP pairs: start at an even port and end at an odd one, e.g. [20000, 20999]"),
            );
            return None;
        }
        Some(low_port..=high_port)
    }

    fn database(&mut self, value: &SString) -> Option<DatabaseUrl> {
        let text = value.get_ref().trim();
        let key = "server.database";
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                self.error(
                    &value.span(),
                    key,
                    "the SQLite path is empty; write e.g. \"sqlite://rgsd.db\"",
                );
                return None;
            }
            return Some(DatabaseUrl::Sqlite(resolve_path(self.base, path)));
        }
        for scheme in ["postgres://", "postgresql://"] {
            if let Some(rest) = text.strip_prefix(scheme) {
                if rest.is_empty() {
                    self.error(&value.span(), key, "the PostgreSQL URL names no host; write e.g. \"postgres://rgsd@localhost/rgsd\"");
                    return None;
                }
                return Some(DatabaseUrl::Postgres(Secret::new(text.to_owned())));
            }
        }
        // Never echo the value: it may hold a password.
        self.error(
            &value.span(),
            key,
            "unsupported database URL; write \"sqlite://PATH\" (relative to the config folder) or \"postgres://USER@HOST/DBNAME\"",
        );
        None
    }

    pub(super) fn registration(
        &mut self,
        raw: &Spanned<RawRegistration>,
        key: &str,
    ) -> Option<Registration> {
        let span = raw.span();
        let r = raw.get_ref();
        let aor = self
            .required(&r.aor, &span, key, "aor")
            .and_then(|u| self.sip_uri(u, &join(key, "aor")));
        let registrar = self
            .required(&r.registrar, &span, key, "registrar")
            .and_then(|u| self.sip_uri(u, &join(key, "registrar")));
        let username = self
            .required(&r.username, &span, key, "username")
            .and_then(|u| {
                if u.get_ref().trim().is_empty() {
                    self.error(&u.span(), &join(key, "username"), "the username is empty");
                    None
                } else {
                    Some(u.get_ref().clone())
                }
            });
        let expires = self.duration(
            r.expires.as_ref(),
            &join(key, "expires"),
            &(Duration::from_secs(1)..=Duration::from_secs(u64::from(u32::MAX))),
            Some(EXPIRES_DEFAULT),
        );
        let password = self.password(r, &span, key);
        Some(Registration {
            aor: aor?,
            registrar: registrar?,
            username: username?,
            password: password?,
            expires: expires?,
        })
    }

    fn password(&mut self, r: &RawRegistration, span: &Range<usize>, key: &str) -> Option<Secret> {
        if let Some(inline) = &r.password {
            self.error(
                &inline.span(),
                &join(key, "password"),
                "passwords are not written in the configuration file; use password_file = \"secrets/NAME.pass\" or password_env = \"VARIABLE\"",
            );
            return None;
        }
        match (&r.password_file, &r.password_env) {
            (Some(f), Some(_)) => {
                self.error(
                    &f.span(),
                    &join(key, "password_file"),
                    "use either password_file or password_env, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    span,
                    &join(key, "password_file"),
                    "missing password_file or password_env",
                );
                None
            }
            (Some(file), None) => {
                let file_key = join(key, "password_file");
                let path = resolve_path(self.base, file.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(contents) => {
                        let secret = contents.trim_end_matches(['\n', '\r']);
                        if secret.is_empty() {
                            self.error(
                                &file.span(),
                                &file_key,
                                format!("the password file {} is empty", path.display()),
                            );
                            None
                        } else {
                            Some(Secret::new(secret.to_owned()))
                        }
                    }
                    Err(e) => {
                        self.error(
                            &file.span(),
                            &file_key,
                            format!("cannot read the password file {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, Some(var)) => {
                let var_key = join(key, "password_env");
                let name = var.get_ref().trim();
                match (self.env.var)(name) {
                    Some(value) if !value.is_empty() => Some(Secret::new(value)),
                    Some(_) => {
                        self.error(
                            &var.span(),
                            &var_key,
                            format!("the environment variable {name} is empty"),
                        );
                        None
                    }
                    None => {
                        self.error(
                            &var.span(),
                            &var_key,
                            format!("the environment variable {name} is not set"),
                        );
                        None
                    }
                }
            }
        }
    }

    pub(super) fn duplicate_registrations(&mut self, raw: &RawConfig) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, r) in raw.registration.iter().enumerate() {
            if let Some(aor) = &r.get_ref().aor {
                let text = aor.get_ref().trim().to_owned();
                if let Some(line) = seen.get(&text) {
                    self.error(
                        &aor.span(),
                        &format!("registration[{i}].aor"),
                        format!("{text} is registered twice; the first is on line {line}"),
                    );
                } else {
                    seen.insert(text, self.map.position(aor.span().start).0);
                }
            }
        }
    }
}

/// An IP address or a DNS name.
fn is_host(text: &str) -> bool {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}
