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
//! Hold: `a=sendonly`/`a=inactive` from the peer, or the old-style `c=0.0.0.0`, mean rgsd must
//! not send; [`Negotiated::direction`] says what rgsd may do, from rgsd's side.
//!
//! Pure: strings in, strings out.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use ::sdp::description::common::{Address, Attribute, ConnectionInformation};
use ::sdp::description::media::{MediaDescription, MediaName, RangedPort};
use ::sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

use super::codec::Codec;

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
}

/// Why an offer cannot be answered, or an answer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Not UTF-8, or not SDP.
    #[error("malformed SDP: {0}")]
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
}

impl AnswerError {
    /// The SIP status to reject the INVITE (or re-INVITE) with.
    #[must_use]
    pub const fn sip_status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::NotUtf8 => 400,
            Self::NoAudio | Self::NoCommonCodec | Self::Address(_) => 488,
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
    let mut lines = Vec::with_capacity(offer.media_descriptions.len());
    for media in &offer.media_descriptions {
        let protos = media.media_name.protos.clone();
        let rejected = || {
            // Port 0 rejects the stream; keep its first format so the line stays valid.
            let formats = media.media_name.formats.iter().take(1).cloned().collect();
            media_line(&media.media_name.media, 0, formats, vec![], protos.clone())
        };
        let is_rtp_audio = media.media_name.media == "audio"
            && protos.first().is_some_and(|p| p == "RTP")
            && protos.get(1).is_some_and(|p| p == "AVP");
        if chosen.is_some() || !is_rtp_audio || media.media_name.port.value == 0 {
            lines.push(rejected());
            continue;
        }
        saw_audio = true;
        let Some(usable) = usable(media) else {
            lines.push(rejected());
            continue;
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
        });
    }
    let negotiated = chosen.ok_or(if saw_audio {
        AnswerError::NoCommonCodec
    } else {
        AnswerError::NoAudio
    })?;
    Ok((negotiated, session(local, lines).marshal()))
}

/// rgsd's offer: one audio stream with PCMU, PCMA and telephone-event, in that order.
#[must_use]
pub(super) fn offer(local: &LocalMedia) -> String {
    let te = TELEPHONE_EVENT_PAYLOAD_TYPE;
    let attributes = vec![
        attribute("rtpmap", Some("0 PCMU/8000".to_owned())),
        attribute("rtpmap", Some("8 PCMA/8000".to_owned())),
        attribute("rtpmap", Some(format!("{te} telephone-event/8000"))),
        attribute("fmtp", Some(format!("{te} 0-15"))),
        attribute("ptime", Some("20".to_owned())),
        attribute(local.direction.attribute(), None),
    ];
    let formats = vec!["0".to_owned(), "8".to_owned(), te.to_string()];
    let protos = vec!["RTP".to_owned(), "AVP".to_owned()];
    session(
        local,
        vec![media_line("audio", local.port, formats, attributes, protos)],
    )
    .marshal()
}

/// Reads the peer's answer to rgsd's [`offer`] (made with `local`).
///
/// # Errors
/// [`AnswerError`] when the answer has no usable audio stream.
pub(super) fn apply_answer(answer: &[u8], local: &LocalMedia) -> Result<Negotiated, AnswerError> {
    let answer = parse(answer)?;
    let media = answer
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media == "audio")
        .ok_or(AnswerError::NoAudio)?;
    let usable = usable(media).ok_or(AnswerError::NoCommonCodec)?;
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
}
