//! SDP offer/answer (RFC 3264) for one audio stream: PCMU, PCMA and telephone-event.
//!
//! Parsing and printing go through the `sdp` crate (webrtc-rs); this module holds the
//! negotiation rules:
//! - [`answer`]: answer a peer's offer. The first audio `m=` line with a non-zero port and a
//!   codec rgsd speaks is used; rgsd takes the *caller's* first supported codec. Every other
//!   `m=` line is answered with port 0, as RFC 3264 §6 requires. No usable codec →
//!   [`AnswerError::NoCommonCodec`], which the SIP layer turns into 488.
//! - [`offer`] and [`apply_answer`]: rgsd's own offer (outbound agent legs) and the peer's answer.
//!
//! SRTP (RFC 3711) keyed by SDES (RFC 4568, `a=crypto`): each leg has a [`SrtpPolicy`]
//! (README, "SRTP"). An answer takes the offer's first `a=crypto` line with a suite rgsd speaks
//! ([`CryptoSuite`]) and answers it with the same tag and rgsd's own key; an offer lists both
//! suites. `off` answers plain RTP only (an offer with only RTP/SAVP gets 488), `offer` answers
//! in kind and offers RTP/AVP with `a=crypto` (best effort), `required` refuses a stream without
//! a usable `a=crypto` line (488) and offers RTP/SAVP. Keys never reach a log: [`MasterKey`]
//! prints as `***` and [`redact`] hides `inline:` keys in any SDP text.
//!
//! Hold: `a=sendonly`/`a=inactive` from the peer, or the old-style `c=0.0.0.0`, mean rgsd must
//! not send; [`Negotiated::direction`] says what rgsd may do, from rgsd's side.
//!
//! Pure: strings in, strings out.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use ::sdp::description::common::{Address, Attribute, ConnectionInformation};
use ::sdp::description::media::{MediaDescription, MediaName, RangedPort};
use ::sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::codec::Codec;
use crate::config::model::SrtpPolicy;

/// The payload type rgsd offers for telephone-event.
pub(super) const TELEPHONE_EVENT_PAYLOAD_TYPE: u8 = 101;

/// Which way media flows, from one side's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The same stream seen from the other side.
    #[must_use]
    pub const fn reversed(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    /// Whether this side sends.
    #[must_use]
    pub const fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    /// Whether this side receives.
    #[must_use]
    pub const fn receives(self) -> bool {
        matches!(self, Self::SendRecv | Self::RecvOnly)
    }

    /// Both sides' wishes combined: each flow happens only if both allow it.
    #[must_use]
    pub const fn and(self, other: Self) -> Self {
        match (
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        ) {
            (true, true) => Self::SendRecv,
            (true, false) => Self::SendOnly,
            (false, true) => Self::RecvOnly,
            (false, false) => Self::Inactive,
        }
    }

    const fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
}

/// An SRTP crypto suite rgsd speaks (RFC 4568 §6.2). Both use AES-128 in counter mode and a
/// 30-byte master key and salt; they differ in the length of the HMAC-SHA1 tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: 80-bit authentication tag.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: 32-bit authentication tag.
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// In the order rgsd offers them.
    pub(super) const ALL: [Self; 2] = [Self::AesCm128HmacSha1_80, Self::AesCm128HmacSha1_32];

    /// The name in `a=crypto`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Self::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Length of an SDES master key and salt for the AES-128 suites: 16 + 14 bytes.
pub(super) const MASTER_LEN: usize = 30;

/// An SRTP master key and salt (16 + 14 bytes), as carried in `inline:`. Never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterKey([u8; MASTER_LEN]);

impl MasterKey {
    /// A fresh key from the operating system's random number generator.
    ///
    /// # Panics
    /// When the OS has no randomness to give (no key is better than a weak one).
    #[must_use]
    pub fn random() -> Self {
        let mut key = [0u8; MASTER_LEN];
        getrandom::fill(&mut key).expect("the OS random number generator failed");
        Self(key)
    }

    /// A key from its bytes (tests, and the SRTP context).
    #[must_use]
    pub const fn from_bytes(bytes: [u8; MASTER_LEN]) -> Self {
        Self(bytes)
    }

    /// The 16-byte master key.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        &self.0[..16]
    }

    /// The 14-byte master salt.
    #[must_use]
    pub fn salt(&self) -> &[u8] {
        &self.0[16..]
    }

    fn inline(&self) -> String {
        BASE64.encode(self.0)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

/// The SDES keys settled for one stream: what rgsd encrypts with and what the peer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes {
    pub suite: CryptoSuite,
    /// rgsd's key: protects what rgsd sends.
    pub ours: MasterKey,
    /// The peer's key: authenticates and decrypts what rgsd receives.
    pub theirs: MasterKey,
}

/// `text` with every `inline:` key replaced by `***`, for logs.
#[must_use]
pub(super) fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    const INLINE: &str = "inline:";
    if !text.contains(INLINE) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(INLINE) {
        let (head, tail) = rest.split_at(at + INLINE.len());
        out.push_str(head);
        out.push_str("***");
        // The key runs to the lifetime/MKI separator, a space or the end of the line.
        let end = tail
            .find(|c: char| c == '|' || c == ';' || c.is_whitespace())
            .unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// One `a=crypto` line rgsd can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Crypto {
    tag: u32,
    suite: CryptoSuite,
    key: MasterKey,
}

/// Parses `<tag> <suite> inline:<key||salt>[|lifetime] [WSH=n]` (RFC 4568 §9.1). Lines rgsd
/// cannot honour give `None`: an unknown suite, a key of the wrong length, several keys or an
/// MKI, or a session parameter other than the replay window (e.g. `UNENCRYPTED_SRTP`).
fn parse_crypto(value: &str) -> Option<Crypto> {
    let mut parts = value.split_ascii_whitespace();
    let tag = parts.next()?;
    if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tag = tag.parse().ok()?;
    let suite = CryptoSuite::from_name(parts.next()?)?;
    let key_params = parts.next()?;
    if parts.any(|p| !p.starts_with("WSH=")) || key_params.contains(';') {
        return None;
    }
    let mut fields = key_params.strip_prefix("inline:")?.split('|');
    let key = BASE64.decode(fields.next()?).ok()?;
    for field in fields {
        // A lifetime (`2^31`, `1048576`) is fine; an MKI (`1:4`) is not supported.
        if field.contains(':') {
            return None;
        }
    }
    let key: [u8; MASTER_LEN] = key.try_into().ok()?;
    Some(Crypto {
        tag,
        suite,
        key: MasterKey(key),
    })
}

/// The first usable `a=crypto` line of `media`, in the peer's order of preference.
fn first_crypto(media: &MediaDescription) -> Option<Crypto> {
    media
        .attributes
        .iter()
        .filter(|a| a.key == "crypto")
        .find_map(|a| parse_crypto(a.value.as_deref()?))
}

fn crypto_attribute(tag: u32, suite: CryptoSuite, key: &MasterKey) -> Attribute {
    attribute(
        "crypto",
        Some(format!("{tag} {} inline:{}", suite.name(), key.inline())),
    )
}

/// rgsd's end of the stream, written into the SDP it sends.
#[derive(Debug, Clone)]
pub(super) struct LocalMedia {
    /// The address written into `o=` and `c=` (the server's advertised host, an IP address).
    pub address: IpAddr,
    /// The leg's RTP port.
    pub port: u16,
    /// `o=` session id; stays the same for the whole dialog.
    pub session_id: u64,
    /// `o=` version; bump it for every new offer or answer in a dialog.
    pub session_version: u64,
    /// What rgsd wants (sendrecv normally; sendonly to put the peer on hold).
    pub direction: Direction,
    /// Whether this leg speaks SRTP.
    pub srtp: SrtpPolicy,
    /// rgsd's SRTP key for this leg (used only when SRTP is settled).
    pub key: MasterKey,
}

/// What offer/answer settled for the stream: everything the leg needs to send and receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Where the peer wants RTP; `None` when it gave port 0 or `c=0.0.0.0` (hold).
    pub remote: Option<SocketAddr>,
    pub codec: Codec,
    /// The payload type of `codec` on this stream (normally its static type).
    pub payload_type: u8,
    /// The telephone-event payload type, when both sides have it.
    pub telephone_event: Option<u8>,
    /// What rgsd may do: send, receive, both or neither.
    pub direction: Direction,
    /// The peer's `a=ptime` in milliseconds, if any (rgsd always sends 20 ms).
    pub ptime: Option<u32>,
    /// SRTP keys, when the stream is SRTP.
    pub srtp: Option<Sdes>,
}

/// Why an offer cannot be answered, or an answer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Not UTF-8, or not SDP.
    #[error("malformed SDP: {}", redact(&.0.to_string()))]
    Malformed(#[from] ::sdp::Error),
    /// The body is not UTF-8 text.
    #[error("SDP is not UTF-8")]
    NotUtf8,
    /// No audio stream with a non-zero port.
    #[error("no audio stream offered")]
    NoAudio,
    /// Audio offered, but neither PCMU nor PCMA.
    #[error("no common codec: rgsd speaks PCMU and PCMA")]
    NoCommonCodec,
    /// A `c=` line rgsd cannot send to (missing, or a host name instead of an address).
    #[error("unusable connection address {0:?}")]
    Address(Option<String>),
    /// SRTP is required (`srtp = "required"`) and the stream has no usable `a=crypto` line.
    #[error(
        "SRTP required: no usable a=crypto line (rgsd speaks AES_CM_128_HMAC_SHA1_80 and _32 with inline keys)"
    )]
    SrtpRequired,
    /// Only RTP/SAVP was offered and this leg's `srtp` is `off`.
    #[error("SRTP (RTP/SAVP) offered but srtp = \"off\"")]
    SrtpOff,
}

impl AnswerError {
    /// The SIP status to reject the INVITE (or re-INVITE) with.
    #[must_use]
    pub const fn sip_status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::NotUtf8 => 400,
            Self::NoAudio
            | Self::NoCommonCodec
            | Self::Address(_)
            | Self::SrtpRequired
            | Self::SrtpOff => 488,
        }
    }
}

fn parse(body: &[u8]) -> Result<SessionDescription, AnswerError> {
    let text = std::str::from_utf8(body).map_err(|_| AnswerError::NotUtf8)?;
    // The parser wants CRLF or LF line ends; tolerate stray leading blank lines.
    Ok(SessionDescription::unmarshal(&mut Cursor::new(
        text.trim_start().as_bytes(),
    ))?)
}

/// What one audio `m=` line offers that rgsd can use.
struct Usable {
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<u8>,
}

/// The `a=rtpmap` encoding of `pt`: (name, clock rate), upper-cased name.
fn rtpmap(media: &MediaDescription, pt: &str) -> Option<(String, u32)> {
    media.attributes.iter().find_map(|a| {
        if a.key != "rtpmap" {
            return None;
        }
        let value = a.value.as_deref()?;
        let (num, encoding) = value.split_once(' ')?;
        if num.trim() != pt {
            return None;
        }
        let mut parts = encoding.trim().split('/');
        let name = parts.next()?.to_ascii_uppercase();
        let rate = parts.next()?.parse().ok()?;
        Some((name, rate))
    })
}

/// The first codec rgsd speaks in the line's format order, plus telephone-event.
fn usable(media: &MediaDescription) -> Option<Usable> {
    let mut codec = None;
    let mut telephone_event = None;
    for format in &media.media_name.formats {
        let Ok(pt) = format.parse::<u8>() else {
            continue;
        };
        let found = match rtpmap(media, format) {
            Some((name, 8_000)) if name == "PCMU" => Some(Codec::Pcmu),
            Some((name, 8_000)) if name == "PCMA" => Some(Codec::Pcma),
            Some((name, 8_000)) if name == "TELEPHONE-EVENT" => {
                telephone_event.get_or_insert(pt);
                None
            }
            Some(_) => None,
            // Static types need no rtpmap (RFC 3551).
            None if pt == 0 => Some(Codec::Pcmu),
            None if pt == 8 => Some(Codec::Pcma),
            None => None,
        };
        if codec.is_none()
            && let Some(c) = found
        {
            codec = Some((c, pt));
        }
    }
    let (codec, payload_type) = codec?;
    Some(Usable {
        codec,
        payload_type,
        telephone_event,
    })
}

fn direction_of(media: &MediaDescription, session: &SessionDescription) -> Direction {
    let find = |attrs: &[Attribute]| {
        attrs.iter().find_map(|a| match a.key.as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
    };
    find(&media.attributes)
        .or_else(|| find(&session.attributes))
        .unwrap_or(Direction::SendRecv)
}

/// The peer's RTP address; `Ok(None)` for hold (`c=0.0.0.0`) or port 0.
fn remote_of(
    media: &MediaDescription,
    session: &SessionDescription,
) -> Result<Option<SocketAddr>, AnswerError> {
    let port = u16::try_from(media.media_name.port.value).unwrap_or(0);
    let connection = media
        .connection_information
        .as_ref()
        .or(session.connection_information.as_ref());
    let address = connection
        .and_then(|c| c.address.as_ref())
        .map(|a| a.address.as_str());
    let Some(address) = address else {
        return Err(AnswerError::Address(None));
    };
    // `c=IN IP4 224.2.1.1/127` carries a TTL after a slash.
    let host = address.split('/').next().unwrap_or(address);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| AnswerError::Address(Some(address.to_owned())))?;
    if port == 0 || ip.is_unspecified() {
        return Ok(None);
    }
    Ok(Some(SocketAddr::new(ip, port)))
}

fn ptime_of(media: &MediaDescription) -> Option<u32> {
    media
        .attribute("ptime")
        .flatten()
        .and_then(|v| v.trim().parse().ok())
}

fn media_line(
    kind: &str,
    port: u16,
    formats: Vec<String>,
    attributes: Vec<Attribute>,
    protos: Vec<String>,
) -> MediaDescription {
    MediaDescription {
        media_name: MediaName {
            media: kind.to_owned(),
            port: RangedPort {
                value: isize::try_from(port).unwrap_or(0),
                range: None,
            },
            protos,
            formats,
        },
        media_title: None,
        connection_information: None,
        bandwidth: vec![],
        encryption_key: None,
        attributes,
    }
}

fn attribute(key: &str, value: Option<String>) -> Attribute {
    Attribute::new(key.to_owned(), value)
}

fn session(local: &LocalMedia, media: Vec<MediaDescription>) -> SessionDescription {
    let address_type = if local.address.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    };
    SessionDescription {
        version: 0,
        origin: Origin {
            username: "rgsd".to_owned(),
            session_id: local.session_id,
            session_version: local.session_version,
            network_type: "IN".to_owned(),
            address_type: address_type.to_owned(),
            unicast_address: local.address.to_string(),
        },
        session_name: "rgsd".to_owned(),
        session_information: None,
        uri: None,
        email_address: None,
        phone_number: None,
        connection_information: Some(ConnectionInformation {
            network_type: "IN".to_owned(),
            address_type: address_type.to_owned(),
            address: Some(Address {
                address: local.address.to_string(),
                ttl: None,
                range: None,
            }),
        }),
        bandwidth: vec![],
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        time_zones: vec![],
        encryption_key: None,
        attributes: vec![],
        media_descriptions: media,
    }
}

/// `Some(false)` for `RTP/AVP`, `Some(true)` for `RTP/SAVP`, `None` for anything else (DTLS,
/// feedback profiles, non-RTP streams).
fn secure_profile(protos: &[String]) -> Option<bool> {
    match protos {
        [rtp, avp] if rtp == "RTP" && avp == "AVP" => Some(false),
        [rtp, savp] if rtp == "RTP" && savp == "SAVP" => Some(true),
        _ => None,
    }
}

/// How an offered stream is keyed under the leg's policy: `None` plain RTP, `Some` SRTP with
/// the peer's crypto line; `Err` when the policy refuses it.
fn keying(
    media: &MediaDescription,
    savp: bool,
    policy: SrtpPolicy,
) -> Result<Option<Crypto>, AnswerError> {
    match (policy, savp) {
        (SrtpPolicy::Off, false) => Ok(None),
        (SrtpPolicy::Off, true) => Err(AnswerError::SrtpOff),
        // Best effort: RTP/AVP with a=crypto is SRTP, without is plain.
        (SrtpPolicy::Offer, false) => Ok(first_crypto(media)),
        (SrtpPolicy::Offer | SrtpPolicy::Required, true) | (SrtpPolicy::Required, false) => {
            first_crypto(media)
                .map(Some)
                .ok_or(AnswerError::SrtpRequired)
        }
    }
}

/// Answers `offer` (an SDP body): picks the stream and codec, and writes rgsd's answer.
///
/// # Errors
/// [`AnswerError`]; its [`AnswerError::sip_status`] is the response to send.
pub(super) fn answer(
    offer: &[u8],
    local: &LocalMedia,
) -> Result<(Negotiated, String), AnswerError> {
    let offer = parse(offer)?;
    let mut chosen: Option<Negotiated> = None;
    let mut saw_audio = false;
    let mut refusal: Option<AnswerError> = None;
    let mut lines = Vec::with_capacity(offer.media_descriptions.len());
    for media in &offer.media_descriptions {
        let protos = media.media_name.protos.clone();
        let rejected = || {
            // Port 0 rejects the stream; keep its first format so the line stays valid.
            let formats = media.media_name.formats.iter().take(1).cloned().collect();
            media_line(&media.media_name.media, 0, formats, vec![], protos.clone())
        };
        let profile = secure_profile(&protos).filter(|_| media.media_name.media == "audio");
        let Some(savp) = profile else {
            lines.push(rejected());
            continue;
        };
        if chosen.is_some() || media.media_name.port.value == 0 {
            lines.push(rejected());
            continue;
        }
        saw_audio = true;
        let Some(usable) = usable(media) else {
            lines.push(rejected());
            continue;
        };
        let crypto = match keying(media, savp, local.srtp) {
            Ok(crypto) => crypto,
            Err(e) => {
                refusal.get_or_insert(e);
                lines.push(rejected());
                continue;
            }
        };
        let remote = remote_of(media, &offer)?;
        let theirs = direction_of(media, &offer);
        // c=0.0.0.0 is the old (RFC 2543) way to say "don't send to me".
        let theirs = if remote.is_none() {
            theirs.and(Direction::SendOnly)
        } else {
            theirs
        };
        let direction = theirs.reversed().and(local.direction);
        let mut formats = vec![usable.payload_type.to_string()];
        let mut attributes = vec![attribute(
            "rtpmap",
            Some(format!(
                "{} {}/8000",
                usable.payload_type,
                usable.codec.encoding_name()
            )),
        )];
        if let Some(te) = usable.telephone_event {
            formats.push(te.to_string());
            attributes.push(attribute(
                "rtpmap",
                Some(format!("{te} telephone-event/8000")),
            ));
            attributes.push(attribute("fmtp", Some(format!("{te} 0-15"))));
        }
        if let Some(c) = crypto {
            // The offer's tag and suite, rgsd's own key (RFC 4568 §7.1.2).
            attributes.push(crypto_attribute(c.tag, c.suite, &local.key));
        }
        attributes.push(attribute("ptime", Some("20".to_owned())));
        attributes.push(attribute(direction.attribute(), None));
        lines.push(media_line("audio", local.port, formats, attributes, protos));
        chosen = Some(Negotiated {
            remote,
            codec: usable.codec,
            payload_type: usable.payload_type,
            telephone_event: usable.telephone_event,
            direction,
            ptime: ptime_of(media),
            srtp: crypto.map(|c| Sdes {
                suite: c.suite,
                ours: local.key,
                theirs: c.key,
            }),
        });
    }
    let negotiated = match (chosen, refusal) {
        (Some(n), _) => n,
        (None, Some(refusal)) => return Err(refusal),
        (None, None) if saw_audio => return Err(AnswerError::NoCommonCodec),
        (None, None) => return Err(AnswerError::NoAudio),
    };
    Ok((negotiated, session(local, lines).marshal()))
}

/// rgsd's offer: one audio stream with PCMU, PCMA and telephone-event, in that order; with
/// SRTP, both suites (tags 1 and 2) keyed with the leg's key, as RTP/SAVP when required and
/// as RTP/AVP (best effort) otherwise.
#[must_use]
pub(super) fn offer(local: &LocalMedia) -> String {
    let te = TELEPHONE_EVENT_PAYLOAD_TYPE;
    let mut attributes = vec![
        attribute("rtpmap", Some("0 PCMU/8000".to_owned())),
        attribute("rtpmap", Some("8 PCMA/8000".to_owned())),
        attribute("rtpmap", Some(format!("{te} telephone-event/8000"))),
        attribute("fmtp", Some(format!("{te} 0-15"))),
    ];
    if local.srtp != SrtpPolicy::Off {
        for (tag, suite) in (1..).zip(CryptoSuite::ALL) {
            attributes.push(crypto_attribute(tag, suite, &local.key));
        }
    }
    attributes.push(attribute("ptime", Some("20".to_owned())));
    attributes.push(attribute(local.direction.attribute(), None));
    let formats = vec!["0".to_owned(), "8".to_owned(), te.to_string()];
    let profile = if local.srtp == SrtpPolicy::Required {
        "SAVP"
    } else {
        "AVP"
    };
    let protos = vec!["RTP".to_owned(), profile.to_owned()];
    session(
        local,
        vec![media_line("audio", local.port, formats, attributes, protos)],
    )
    .marshal()
}

/// The peer's answer to rgsd's crypto lines: its key for one of the tags rgsd offered, with
/// that tag's suite.
fn answered_crypto(media: &MediaDescription) -> Option<Crypto> {
    media
        .attributes
        .iter()
        .filter(|a| a.key == "crypto")
        .filter_map(|a| parse_crypto(a.value.as_deref()?))
        .find(|c| {
            usize::try_from(c.tag)
                .ok()
                .and_then(|tag| tag.checked_sub(1))
                .and_then(|i| CryptoSuite::ALL.get(i))
                == Some(&c.suite)
        })
}

/// Reads the peer's answer to rgsd's [`offer`] (made with `local`).
///
/// # Errors
/// [`AnswerError`] when the answer has no usable audio stream, or no usable key when SRTP is
/// required (or answered with RTP/SAVP).
pub(super) fn apply_answer(answer: &[u8], local: &LocalMedia) -> Result<Negotiated, AnswerError> {
    let answer = parse(answer)?;
    let media = answer
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio")
        .ok_or(AnswerError::NoAudio)?;
    let usable = usable(media).ok_or(AnswerError::NoCommonCodec)?;
    let savp = secure_profile(&media.media_name.protos) == Some(true);
    let crypto = match local.srtp {
        SrtpPolicy::Off if savp => return Err(AnswerError::SrtpOff),
        SrtpPolicy::Off => None,
        SrtpPolicy::Offer | SrtpPolicy::Required => answered_crypto(media),
    };
    if crypto.is_none() && (savp || local.srtp == SrtpPolicy::Required) {
        return Err(AnswerError::SrtpRequired);
    }
    let remote = remote_of(media, &answer)?;
    let theirs = direction_of(media, &answer);
    let theirs = if remote.is_none() {
        theirs.and(Direction::SendOnly)
    } else {
        theirs
    };
    Ok(Negotiated {
        remote,
        codec: usable.codec,
        payload_type: usable.payload_type,
        telephone_event: usable.telephone_event,
        direction: theirs.reversed().and(local.direction),
        ptime: ptime_of(media),
        srtp: crypto.map(|c| Sdes {
            suite: c.suite,
            ours: local.key,
            theirs: c.key,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalMedia {
        LocalMedia {
            address: "192.0.2.10".parse().unwrap(),
            port: 40_000,
            session_id: 7,
            session_version: 1,
            direction: Direction::SendRecv,
            srtp: SrtpPolicy::Off,
            key: MasterKey::from_bytes([7; MASTER_LEN]),
        }
    }

    fn sdp(media: &str) -> String {
        format!(
            "v=0\r\no=alice 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n{media}"
        )
    }

    #[test]
    fn takes_the_callers_first_supported_codec() {
        let offer = sdp(
            "m=audio 5004 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:30\r\n",
        );
        let (n, text) = answer(offer.as_bytes(), &local()).unwrap();
        assert_eq!(n.codec, Codec::Pcma);
        assert_eq!(n.payload_type, 8);
        assert_eq!(n.telephone_event, Some(101));
        assert_eq!(n.remote, Some("198.51.100.7:5004".parse().unwrap()));
        assert_eq!(n.direction, Direction::SendRecv);
        assert_eq!(n.ptime, Some(30));
        assert!(text.contains("m=audio 40000 RTP/AVP 8 101\r\n"), "{text}");
        assert!(text.contains("c=IN IP4 192.0.2.10\r\n"));
        assert!(text.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(text.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(text.contains("a=sendrecv\r\n"));
        // The answer parses back to the same choice.
        let back = apply_answer(text.as_bytes(), &local()).unwrap();
        assert_eq!(back.codec, Codec::Pcma);
        assert_eq!(back.remote, Some("192.0.2.10:40000".parse().unwrap()));
    }

    #[test]
    fn dynamic_payload_types_and_media_level_connection() {
        let offer = sdp(
            "m=audio 6000 RTP/AVP 96 97\r\nc=IN IP4 203.0.113.5\r\na=rtpmap:96 pcmu/8000\r\na=rtpmap:97 telephone-event/8000\r\n",
        );
        let (n, text) = answer(offer.as_bytes(), &local()).unwrap();
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 96));
        assert_eq!(n.telephone_event, Some(97));
        assert_eq!(n.remote, Some("203.0.113.5:6000".parse().unwrap()));
        assert!(text.contains("m=audio 40000 RTP/AVP 96 97\r\n"), "{text}");
    }

    #[test]
    fn no_common_codec_is_488() {
        let offer = sdp("m=audio 5004 RTP/AVP 9 18\r\na=rtpmap:18 G729/8000\r\n");
        let err = answer(offer.as_bytes(), &local()).unwrap_err();
        assert!(matches!(err, AnswerError::NoCommonCodec));
        assert_eq!(err.sip_status(), 488);
        let video_only = sdp("m=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n");
        let err = answer(video_only.as_bytes(), &local()).unwrap_err();
        assert!(matches!(err, AnswerError::NoAudio));
        assert_eq!(err.sip_status(), 488);
        // PCMU at the wrong clock rate is not PCMU.
        let wide = sdp("m=audio 5004 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n");
        assert!(matches!(
            answer(wide.as_bytes(), &local()),
            Err(AnswerError::NoCommonCodec)
        ));
        let garbage = answer(b"hello", &local()).unwrap_err();
        assert_eq!(garbage.sip_status(), 400);
        assert_eq!(
            answer(&[0xff, 0xfe], &local()).unwrap_err().sip_status(),
            400
        );
    }

    #[test]
    fn other_streams_are_rejected_with_port_zero() {
        let offer = sdp(
            "m=video 5006 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio 0 RTP/AVP 0\r\nm=audio 5004 RTP/AVP 0\r\n",
        );
        let (n, text) = answer(offer.as_bytes(), &local()).unwrap();
        assert_eq!(n.remote, Some("198.51.100.7:5004".parse().unwrap()));
        assert_eq!(n.telephone_event, None);
        let m_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(
            m_lines,
            [
                "m=video 0 RTP/AVP 96",
                "m=audio 0 RTP/AVP 0",
                "m=audio 40000 RTP/AVP 0"
            ]
        );
    }

    #[test]
    fn hold_directions() {
        let cases = [
            ("a=sendonly\r\n", Direction::RecvOnly),
            ("a=recvonly\r\n", Direction::SendOnly),
            ("a=inactive\r\n", Direction::Inactive),
            ("a=sendrecv\r\n", Direction::SendRecv),
            ("", Direction::SendRecv),
        ];
        for (attr, ours) in cases {
            let offer = sdp(&format!("m=audio 5004 RTP/AVP 0\r\n{attr}"));
            let (n, text) = answer(offer.as_bytes(), &local()).unwrap();
            assert_eq!(n.direction, ours, "{attr}");
            assert!(text.contains(&format!("a={}\r\n", ours.attribute())));
        }
        // Session-level attribute applies to the stream.
        let offer = sdp("a=sendonly\r\nm=audio 5004 RTP/AVP 0\r\n");
        assert_eq!(
            answer(offer.as_bytes(), &local()).unwrap().0.direction,
            Direction::RecvOnly
        );
        // Old-style hold: c=0.0.0.0.
        let offer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        let (n, _) = answer(offer.as_bytes(), &local()).unwrap();
        assert_eq!(n.remote, None);
        assert_eq!(n.direction, Direction::RecvOnly);
        // rgsd itself holding the peer.
        let mut holding = local();
        holding.direction = Direction::SendOnly;
        let (n, text) = answer(sdp("m=audio 5004 RTP/AVP 0\r\n").as_bytes(), &holding).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
        assert!(text.contains("a=sendonly\r\n"));
    }

    #[test]
    fn offers_all_codecs_and_reads_the_answer() {
        let text = offer(&local());
        assert!(text.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"), "{text}");
        assert!(text.contains("a=fmtp:101 0-15\r\n"));
        // It parses, and answering it picks PCMU.
        let (n, _) = answer(text.as_bytes(), &local()).unwrap();
        assert_eq!(n.codec, Codec::Pcmu);
        let reply = sdp(
            "m=audio 7000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n",
        );
        let n = apply_answer(reply.as_bytes(), &local()).unwrap();
        assert_eq!((n.codec, n.telephone_event), (Codec::Pcma, Some(101)));
        assert_eq!(n.direction, Direction::SendOnly);
        let no_codec = sdp("m=audio 7000 RTP/AVP 9\r\n");
        assert!(matches!(
            apply_answer(no_codec.as_bytes(), &local()),
            Err(AnswerError::NoCommonCodec)
        ));
        let hostname = "v=0\r\no=- 1 2 IN IP4 pbx\r\ns=-\r\nc=IN IP4 pbx.example.com\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        assert_eq!(
            answer(hostname.as_bytes(), &local())
                .unwrap_err()
                .sip_status(),
            488
        );
    }

    const KEY_B64: &str = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIz"; // "ABC…Z0123": 30 bytes

    fn with_policy(srtp: SrtpPolicy) -> LocalMedia {
        LocalMedia { srtp, ..local() }
    }

    #[test]
    fn crypto_lines_parse_and_unusable_ones_are_skipped() {
        let c = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}")).unwrap();
        assert_eq!((c.tag, c.suite), (1, CryptoSuite::AesCm128HmacSha1_80));
        assert_eq!(c.key.key(), b"ABCDEFGHIJKLMNOP");
        assert_eq!(c.key.salt(), b"QRSTUVWXYZ0123");
        // A lifetime and a replay window are fine.
        let c = parse_crypto(&format!(
            "7 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B64}|2^31 WSH=64"
        ))
        .unwrap();
        assert_eq!((c.tag, c.suite), (7, CryptoSuite::AesCm128HmacSha1_32));
        for bad in [
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_B64}"), // suite rgsd lacks
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}|2^20|1:4"), // MKI
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64};inline:{KEY_B64}"), // two keys
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64} UNENCRYPTED_SRTP"),
            "1 AES_CM_128_HMAC_SHA1_80 inline:QUJD".to_owned(), // 3 bytes
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!notbase64!!".to_owned(),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 {KEY_B64}"),
            "1 AES_CM_128_HMAC_SHA1_80".to_owned(),
        ] {
            assert!(parse_crypto(&bad).is_none(), "{bad}");
        }
    }

    /// (policy, profile, crypto lines) → the settled suite, or the refusal's status.
    #[test]
    fn policy_table_for_offers() {
        let good = format!("a=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B64}\r\n");
        let unknown = format!("a=crypto:1 F8_128_HMAC_SHA1_80 inline:{KEY_B64}\r\n");
        let both = format!("{unknown}{good}");
        type Row<'a> = (SrtpPolicy, &'a str, &'a str, Result<bool, u16>);
        let rows: [Row<'_>; 13] = [
            (SrtpPolicy::Off, "AVP", "", Ok(false)),
            (SrtpPolicy::Off, "AVP", &good, Ok(false)), // crypto ignored: plain answer
            (SrtpPolicy::Off, "SAVP", &good, Err(488)),
            (SrtpPolicy::Offer, "AVP", "", Ok(false)),
            (SrtpPolicy::Offer, "AVP", &good, Ok(true)),
            (SrtpPolicy::Offer, "SAVP", &good, Ok(true)),
            (SrtpPolicy::Offer, "SAVP", "", Err(488)),
            (SrtpPolicy::Offer, "SAVP", &unknown, Err(488)),
            (SrtpPolicy::Required, "AVP", "", Err(488)),
            (SrtpPolicy::Required, "AVP", &good, Ok(true)),
            (SrtpPolicy::Required, "SAVP", &both, Ok(true)), // first *supported* suite
            (SrtpPolicy::Required, "SAVP", "", Err(488)),
            (SrtpPolicy::Required, "SAVP", &unknown, Err(488)),
        ];
        for (policy, profile, crypto, want) in rows {
            let offer = sdp(&format!("m=audio 5004 RTP/{profile} 0\r\n{crypto}"));
            let local = with_policy(policy);
            let got = answer(offer.as_bytes(), &local);
            let case = format!("{policy:?} RTP/{profile} {}", redact(crypto));
            match (got, want) {
                (Ok((n, text)), Ok(true)) => {
                    let keys = n.srtp.expect(&case);
                    assert_eq!(keys.suite, CryptoSuite::AesCm128HmacSha1_32, "{case}");
                    assert_eq!(keys.ours, local.key, "{case}");
                    assert_eq!(keys.theirs.key(), b"ABCDEFGHIJKLMNOP", "{case}");
                    assert!(
                        text.contains(&format!("m=audio 40000 RTP/{profile} 0\r\n")),
                        "{case}"
                    );
                    // Answered with the offer's tag and suite and rgsd's own key.
                    let ours = format!(
                        "a=crypto:5 AES_CM_128_HMAC_SHA1_32 inline:{}\r\n",
                        local.key.inline()
                    );
                    assert!(text.contains(&ours), "{case}: {text}");
                    assert!(!text.contains(KEY_B64), "{case}: the peer's key echoed");
                }
                (Ok((n, text)), Ok(false)) => {
                    assert!(n.srtp.is_none(), "{case}");
                    assert!(!text.contains("a=crypto"), "{case}");
                    assert!(text.contains("RTP/AVP 0\r\n"), "{case}");
                }
                (Err(e), Err(status)) => assert_eq!(e.sip_status(), status, "{case}: {e}"),
                (got, want) => panic!("{case}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn an_srtp_line_and_a_plain_line_pick_by_policy() {
        let offer = sdp(&format!(
            "m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}\r\nm=audio 5006 RTP/AVP 0\r\n"
        ));
        let (n, text) = answer(offer.as_bytes(), &local()).unwrap();
        assert_eq!(n.remote, Some("198.51.100.7:5006".parse().unwrap()));
        assert!(n.srtp.is_none());
        assert!(text.contains("m=audio 0 RTP/SAVP 0\r\n"), "{text}");
        let (n, text) = answer(offer.as_bytes(), &with_policy(SrtpPolicy::Offer)).unwrap();
        assert_eq!(n.remote, Some("198.51.100.7:5004".parse().unwrap()));
        assert!(n.srtp.is_some());
        assert!(text.contains("m=audio 0 RTP/AVP 0\r\n"), "{text}");
    }

    #[test]
    fn offers_both_suites_and_reads_the_answered_key() {
        assert!(!offer(&local()).contains("a=crypto"));
        for (policy, profile) in [(SrtpPolicy::Offer, "AVP"), (SrtpPolicy::Required, "SAVP")] {
            let local = with_policy(policy);
            let text = offer(&local);
            assert!(text.contains(&format!("m=audio 40000 RTP/{profile} 0 8 101\r\n")));
            let inline = local.key.inline();
            assert!(text.contains(&format!(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{inline}\r\n"
            )));
            assert!(text.contains(&format!(
                "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{inline}\r\n"
            )));
            // The peer picks tag 2.
            let reply = sdp(&format!(
                "m=audio 7000 RTP/{profile} 0\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B64}\r\n"
            ));
            let keys = apply_answer(reply.as_bytes(), &local)
                .unwrap()
                .srtp
                .unwrap();
            assert_eq!(keys.suite, CryptoSuite::AesCm128HmacSha1_32);
            assert_eq!(
                (keys.ours, keys.theirs.salt()),
                (local.key, &b"QRSTUVWXYZ0123"[..])
            );
            // A tag rgsd did not offer with that suite is no answer.
            let wrong = sdp(&format!(
                "m=audio 7000 RTP/{profile} 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{KEY_B64}\r\n"
            ));
            let plain = sdp("m=audio 7000 RTP/AVP 0\r\n");
            if policy == SrtpPolicy::Required {
                assert!(matches!(
                    apply_answer(wrong.as_bytes(), &local),
                    Err(AnswerError::SrtpRequired)
                ));
                assert!(matches!(
                    apply_answer(plain.as_bytes(), &local),
                    Err(AnswerError::SrtpRequired)
                ));
            } else {
                // RTP/AVP with no key rgsd offered: plain; RTP/SAVP: unusable.
                assert!(
                    apply_answer(wrong.as_bytes(), &local)
                        .unwrap()
                        .srtp
                        .is_none()
                );
                let wrong_savp = wrong.replace("RTP/AVP", "RTP/SAVP");
                assert!(matches!(
                    apply_answer(wrong_savp.as_bytes(), &local),
                    Err(AnswerError::SrtpRequired)
                ));
                // Best effort: a plain answer is plain RTP.
                assert!(
                    apply_answer(plain.as_bytes(), &local)
                        .unwrap()
                        .srtp
                        .is_none()
                );
            }
        }
        // Offered plain, answered RTP/SAVP: unusable.
        let savp = sdp("m=audio 7000 RTP/SAVP 0\r\n");
        assert!(matches!(
            apply_answer(savp.as_bytes(), &local()),
            Err(AnswerError::SrtpOff)
        ));
    }

    #[test]
    fn keys_are_redacted_and_fresh() {
        let line = format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B64}|2^20\r\nm=x");
        assert_eq!(
            redact(&line),
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:***|2^20\r\nm=x"
        );
        assert_eq!(redact("no keys"), "no keys");
        assert!(!format!("{:?}", local()).contains(&local().key.inline()));
        assert_ne!(MasterKey::random(), MasterKey::random());
    }
}
