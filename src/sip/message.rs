//! The wire-format boundary: SIP messages as bytes in, typed values out, and back.
//!
//! Everything else in [`crate::sip`] sees [`Request`], [`Response`] and the small typed views
//! below ([`Via`], [`NameAddr`], [`CSeq`]); nothing else touches raw bytes or a parser crate.
//!
//! # Why not rsip's message tokenizer
//!
//! rsip 0.4 (last release 2022) parses URIs well enough, and [`parse_uri`] uses it, but its message
//! tokenizer cannot serve a UA that must answer everything it receives:
//! - its `Method` is a closed enum, so a request with an unknown method fails to parse and can
//!   never get the 405 RFC 3261 §8.2.1 requires;
//! - it does not unfold continuation lines, accept whitespace before the colon, or know compact
//!   header names (`v`, `i`, `f`, `t`, `m`, `l`, `c`, `k`, `s`), all legal (RFC 4475 §3.1.1.1);
//! - it ignores `Content-Length` (the body is "the rest"), which stream transports need;
//! - it prints bodies through `String::from_utf8_lossy`, altering non-UTF-8 bodies.
//!
//! So the message grammar (start line, header fields, body framing) is the ~300 lines below,
//! fuzzed (`fuzz/`) and replayed against the RFC 4475 corpus (`tests/sip_torture.rs`).
//!
//! Parsing never panics; every refusal is a [`ParseError`] saying what was wrong.

use std::fmt::Write as _;

use bytes::Bytes;

/// Largest message accepted on any transport (headers and body). Bigger ones are refused.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Why bytes were refused as a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing but whitespace (a keep-alive, RFC 5626 §4.4.1): ignore it silently.
    #[error("empty message")]
    Empty,
    /// The message is larger than [`MAX_MESSAGE_SIZE`].
    #[error("message larger than {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    /// No blank line ends the header section.
    #[error("no end of headers")]
    NoHeaderEnd,
    /// The header section is not UTF-8.
    #[error("headers are not UTF-8")]
    NotUtf8,
    /// The first line is neither a request line nor a status line.
    #[error("bad start line")]
    StartLine,
    /// The protocol version is not `SIP/2.0`.
    #[error("unsupported SIP version")]
    Version,
    /// A header line has no colon or a bad name.
    #[error("bad header line")]
    HeaderLine,
    /// A header every request or response must carry is missing or appears twice.
    #[error("missing or repeated {0} header")]
    MandatoryHeader(&'static str),
    /// A header is present but its value does not parse.
    #[error("malformed {0} header")]
    HeaderValue(&'static str),
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match the request method")]
    CSeqMethod,
    /// Content-Length announces more bytes than arrived.
    #[error("body shorter than Content-Length")]
    Truncated,
    /// The Request-URI does not parse.
    #[error("bad Request-URI")]
    RequestUri,
}

/// A SIP method. Unknown methods are kept as written so that they can be answered with 405.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    /// Any other token, case preserved.
    Other(String),
}

impl Method {
    /// Parses a method token (case-sensitive, as RFC 3261 §7.1 says).
    pub fn from_token(token: &str) -> Option<Self> {
        if token.is_empty() || !token.bytes().all(is_token_byte) {
            return None;
        }
        Some(match token {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "BYE" => Self::Bye,
            "CANCEL" => Self::Cancel,
            "OPTIONS" => Self::Options,
            "REGISTER" => Self::Register,
            "INFO" => Self::Info,
            "UPDATE" => Self::Update,
            "PRACK" => Self::Prack,
            "SUBSCRIBE" => Self::Subscribe,
            "NOTIFY" => Self::Notify,
            "REFER" => Self::Refer,
            "MESSAGE" => Self::Message,
            "PUBLISH" => Self::Publish,
            other => Self::Other(other.to_owned()),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Invite => "INVITE",
            Self::Ack => "ACK",
            Self::Bye => "BYE",
            Self::Cancel => "CANCEL",
            Self::Options => "OPTIONS",
            Self::Register => "REGISTER",
            Self::Info => "INFO",
            Self::Update => "UPDATE",
            Self::Prack => "PRACK",
            Self::Subscribe => "SUBSCRIBE",
            Self::Notify => "NOTIFY",
            Self::Refer => "REFER",
            Self::Message => "MESSAGE",
            Self::Publish => "PUBLISH",
            Self::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Header fields in arrival order, names in their long form (compact forms expanded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

/// Expands a compact header name (RFC 3261 §7.3.3 and later RFCs) to its long form.
fn long_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'v' => "Via",
        b'i' => "Call-ID",
        b'f' => "From",
        b't' => "To",
        b'm' => "Contact",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'k' => "Supported",
        b's' => "Subject",
        b'e' => "Content-Encoding",
        b'x' => "Session-Expires",
        b'o' => "Event",
        b'r' => "Refer-To",
        _ => name,
    }
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header line named `name`, as written (not split on commas).
    pub fn get_lines<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a list header (Via, Route, Record-Route, Contact, Allow, …): all lines,
    /// each split on commas outside quotes and angle brackets.
    pub fn get_list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_lines(name).flat_map(split_list)
    }

    /// How many lines named `name` there are.
    pub fn count(&self, name: &str) -> usize {
        self.get_lines(name).count()
    }

    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Drops every line named `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Puts `name` first (used for Via).
    pub fn push_front(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(0, (name.into(), value.into()));
    }

    /// Replaces the first value of list header `name` (the top Via), keeping the others.
    pub fn set_first_list_item(&mut self, name: &str, value: &str) {
        if let Some((_, line)) = self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            let mut items: Vec<String> = split_list(line).map(str::to_owned).collect();
            if let Some(first) = items.first_mut() {
                value.clone_into(first);
            }
            *line = items.join(", ");
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// Splits a header value on commas that are outside quotes and `<…>`.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut quoted, mut angle, mut escaped, mut start) = (false, false, false, 0);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                parts.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(value[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty())
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The Request-URI as written.
    pub uri: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Self::Request(r) => &r.headers,
            Self::Response(r) => &r.headers,
        }
    }

    pub fn to_bytes(&self) -> Bytes {
        match self {
            Self::Request(r) => r.to_bytes(),
            Self::Response(r) => r.to_bytes(),
        }
    }
}

/// Where the header section ends in a stream buffer: the index just past the blank line.
pub fn header_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The Content-Length of a header section (as bytes), for stream framing. `Ok(None)` when the
/// header is absent.
pub fn content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let text = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let headers = parse_header_lines(text.lines().skip(1))?;
    headers
        .get("Content-Length")
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| ParseError::HeaderValue("Content-Length"))
        })
        .transpose()
}

/// Parses one whole message (one UDP datagram, or one frame cut from a stream).
///
/// Checks the grammar and the headers the transaction layer relies on (Via with a branch or at
/// least a sent-by, From, To, Call-ID, CSeq with the request's method). Never panics.
///
/// # Errors
///
/// [`ParseError`] names the first problem found.
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    // RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives, stream padding).
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))
        .ok_or(ParseError::Empty)?;
    let bytes = &bytes[start..];
    let head_len = header_end(bytes)
        .or_else(|| {
            // A message with no headers after the start line ends at the first blank line;
            // also accept bare-LF messages (RFC 3261 §7 allows LF alone to be tolerated).
            bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
        })
        .ok_or(ParseError::NoHeaderEnd)?;
    let head = std::str::from_utf8(&bytes[..head_len]).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.lines();
    let start_line = lines.next().ok_or(ParseError::StartLine)?;
    let headers = parse_header_lines(lines)?;

    let rest = &bytes[head_len..];
    let body = match headers.count("Content-Length") {
        0 => Bytes::copy_from_slice(rest),
        1 => {
            let len = headers
                .get("Content-Length")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(ParseError::HeaderValue("Content-Length"))?;
            // Extra bytes past Content-Length are discarded (RFC 3261 §18.3).
            Bytes::copy_from_slice(rest.get(..len).ok_or(ParseError::Truncated)?)
        }
        _ => return Err(ParseError::MandatoryHeader("Content-Length")),
    };

    let message = if let Some(rest) = start_line.strip_prefix("SIP/") {
        let mut parts = rest.splitn(3, ' ');
        if parts.next() != Some("2.0") {
            return Err(ParseError::Version);
        }
        let code = parts.next().ok_or(ParseError::StartLine)?;
        if code.len() != 3 {
            return Err(ParseError::StartLine);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::StartLine)?;
        if !(100..=699).contains(&status) {
            return Err(ParseError::StartLine);
        }
        Message::Response(Response {
            status,
            reason: parts.next().unwrap_or("").to_owned(),
            headers,
            body,
        })
    } else {
        // Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces.
        let mut parts = start_line.split(' ');
        let (Some(method), Some(uri), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseError::StartLine);
        };
        let method = Method::from_token(method).ok_or(ParseError::StartLine)?;
        if version != "SIP/2.0" {
            return Err(if version.starts_with("SIP/") {
                ParseError::Version
            } else {
                ParseError::StartLine
            });
        }
        if uri.is_empty()
            || !uri.contains(':')
            || uri
                .bytes()
                .any(|b| b <= b' ' || b == 0x7f || b"<>\"".contains(&b))
        {
            return Err(ParseError::RequestUri);
        }
        Message::Request(Request {
            method,
            uri: uri.to_owned(),
            headers,
            body,
        })
    };
    check_mandatory(&message)?;
    Ok(message)
}

/// A 400 response for a request that failed [`parse`], when one can still be formed: the start
/// line is a request line (not ACK) and Via, From, To, Call-ID and CSeq can be copied as written.
/// `None` means the message must be dropped.
pub fn bad_request(bytes: &[u8], error: &ParseError) -> Option<Bytes> {
    let bytes = bytes.get(..bytes.len().min(MAX_MESSAGE_SIZE))?;
    let head_len = header_end(bytes).unwrap_or(bytes.len());
    let head = std::str::from_utf8(bytes.get(..head_len)?).ok()?;
    let mut lines = head.trim_start().lines();
    let method = lines.next()?.split(' ').next()?;
    if method.starts_with("SIP/") || method == "ACK" || Method::from_token(method).is_none() {
        return None;
    }
    // Keep only well-formed lines; a folded or broken line elsewhere must not stop the reply.
    let mut headers = Headers::new();
    for line in lines {
        if let Some((n, v)) = line.split_once(':') {
            let n = n.trim();
            if !n.is_empty() && n.bytes().all(is_token_byte) {
                headers.push(long_name(n), v.trim());
            }
        }
    }
    let mut out = Headers::new();
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        let value = headers.get(name)?;
        if name == "Via" {
            for via in headers.get_lines("Via") {
                out.push("Via", via);
            }
        } else {
            out.push(name, value);
        }
    }
    let response = Response {
        status: 400,
        reason: match error {
            ParseError::Version => "Version Not Supported".to_owned(),
            e => format!("Bad Request ({e})"),
        },
        headers: out,
        body: Bytes::new(),
    };
    Some(response.to_bytes())
}

fn parse_header_lines<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Headers, ParseError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Continuation of the previous header value (line folding, RFC 3261 §7.3.1).
            let last = headers.last_mut().ok_or(ParseError::HeaderLine)?;
            last.1.push(' ');
            last.1.push_str(line.trim());
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::HeaderLine)?;
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(ParseError::HeaderLine);
        }
        headers.push((long_name(name).to_owned(), value.trim().to_owned()));
    }
    Ok(Headers(headers))
}

fn check_mandatory(message: &Message) -> Result<(), ParseError> {
    let headers = message.headers();
    for name in ["Call-ID", "From", "To", "CSeq"] {
        if headers.count(name) != 1 {
            return Err(ParseError::MandatoryHeader(name));
        }
    }
    let mut vias = 0;
    for via in headers.get_lines("Via") {
        // Empty list elements (`,,`) are as malformed as a bad value.
        if via.split(',').any(|v| v.trim().is_empty()) {
            return Err(ParseError::HeaderValue("Via"));
        }
        for item in split_list(via) {
            Via::parse(item)?;
            vias += 1;
        }
    }
    if vias == 0 {
        return Err(ParseError::MandatoryHeader("Via"));
    }
    NameAddr::parse(headers.get("From").unwrap_or_default())
        .map_err(|_| ParseError::HeaderValue("From"))?;
    NameAddr::parse(headers.get("To").unwrap_or_default())
        .map_err(|_| ParseError::HeaderValue("To"))?;
    let cseq = CSeq::parse(headers.get("CSeq").unwrap_or_default())?;
    if let Message::Request(req) = message {
        if cseq.method != req.method {
            return Err(ParseError::CSeqMethod);
        }
        if let Some(mf) = headers.get("Max-Forwards") {
            mf.trim()
                .parse::<u8>()
                .map_err(|_| ParseError::HeaderValue("Max-Forwards"))?;
        }
    }
    Ok(())
}

/// Magic cookie that marks an RFC 3261 branch (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;branch=…;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `UDP`, `TCP`, … (upper case).
    pub transport: String,
    /// `host[:port]` as written.
    pub sent_by: String,
    pub params: Vec<(String, Option<String>)>,
}

impl Via {
    /// # Errors
    ///
    /// [`ParseError::HeaderValue`] when the protocol or sent-by is missing.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        const BAD: ParseError = ParseError::HeaderValue("Via");
        // sent-protocol allows LWS around each '/' (RFC 4475 §3.1.1.1).
        let (name, rest) = value.trim().split_once('/').ok_or(BAD)?;
        let (version, rest) = rest.split_once('/').ok_or(BAD)?;
        let rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).ok_or(BAD)?;
        let (transport, rest) = rest.split_at(end);
        if !name.trim().eq_ignore_ascii_case("SIP")
            || version.trim() != "2.0"
            || transport.is_empty()
            || !transport.bytes().all(is_token_byte)
        {
            return Err(BAD);
        }
        let mut items = rest.split(';');
        let sent_by = items.next().map(str::trim).unwrap_or_default();
        if sent_by.is_empty() || sent_by.contains(char::is_whitespace) {
            return Err(BAD);
        }
        let items: Vec<&str> = items.collect();
        if items.iter().any(|p| p.trim().is_empty()) {
            return Err(BAD); // `;;`: an empty via-param
        }
        Ok(Self {
            transport: transport.to_ascii_uppercase(),
            sent_by: sent_by.to_owned(),
            params: parse_params(items.into_iter()),
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.sent_by)?;
        write_params(f, &self.params)
    }
}

fn parse_params<'a>(items: impl Iterator<Item = &'a str>) -> Vec<(String, Option<String>)> {
    items
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_owned(), Some(v.trim().to_owned())),
            None => (p.to_owned(), None),
        })
        .collect()
}

fn write_params(
    f: &mut std::fmt::Formatter<'_>,
    params: &[(String, Option<String>)],
) -> std::fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

/// `"Display" <uri>;params` or `uri;params` (From, To, Contact, Route, Record-Route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name and angle brackets as written, e.g. `"Bob" ` (empty for a bare URI).
    pub display: String,
    pub uri: String,
    /// Header parameters (after `>`, or after the bare URI).
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// # Errors
    ///
    /// [`ParseError::HeaderValue`] when no URI can be found.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        const BAD: ParseError = ParseError::HeaderValue("name-addr");
        let value = value.trim();
        // Find '<' outside a quoted display name.
        let mut quoted = false;
        let mut escaped = false;
        let mut lt = None;
        for (i, c) in value.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '<' if !quoted => {
                    lt = Some(i);
                    break;
                }
                _ => {}
            }
        }
        if quoted {
            return Err(BAD);
        }
        let (display, uri, rest) = if let Some(lt) = lt {
            let gt = value[lt..].find('>').ok_or(BAD)? + lt;
            (&value[..lt], &value[lt + 1..gt], &value[gt + 1..])
        } else {
            let end = value.find(';').unwrap_or(value.len());
            ("", &value[..end], &value[end..])
        };
        let uri = uri.trim();
        if uri.is_empty() || !uri.contains(':') || uri.contains(char::is_whitespace) {
            return Err(BAD);
        }
        Ok(Self {
            display: display.trim().to_owned(),
            uri: uri.to_owned(),
            params: parse_params(rest.split(';')),
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("tag"))
            .and_then(|(_, v)| v.as_deref())
    }

    pub fn with_tag(mut self, tag: &str) -> Self {
        self.params.retain(|(n, _)| !n.eq_ignore_ascii_case("tag"));
        self.params.push(("tag".into(), Some(tag.into())));
        self
    }
}

impl std::fmt::Display for NameAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.display.is_empty() {
            write!(f, "<{}>", self.uri)?;
        } else {
            write!(f, "{} <{}>", self.display, self.uri)?;
        }
        write_params(f, &self.params)
    }
}

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// # Errors
    ///
    /// [`ParseError::HeaderValue`] unless the value is a 32-bit number and a method token.
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        const BAD: ParseError = ParseError::HeaderValue("CSeq");
        let mut parts = value.split_whitespace();
        let (Some(seq), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(BAD);
        };
        Ok(Self {
            seq: seq.parse().map_err(|_| BAD)?,
            method: Method::from_token(method).ok_or(BAD)?,
        })
    }
}

pub use crate::config::uri::UriTarget;

/// Parses a `sip:`/`sips:` URI into a target (`config::uri::target`, the one URI parser).
///
/// # Errors
///
/// [`ParseError::RequestUri`] when the URI does not parse.
pub fn parse_uri(uri: &str) -> Result<UriTarget, ParseError> {
    crate::config::uri::target(uri).ok_or(ParseError::RequestUri)
}

impl Request {
    pub fn call_id(&self) -> &str {
        self.headers.get("Call-ID").unwrap_or_default()
    }

    pub fn cseq(&self) -> Option<CSeq> {
        CSeq::parse(self.headers.get("CSeq")?).ok()
    }

    pub fn top_via(&self) -> Option<Via> {
        Via::parse(self.headers.get_list("Via").next()?).ok()
    }

    pub fn from(&self) -> Option<NameAddr> {
        NameAddr::parse(self.headers.get("From")?).ok()
    }

    pub fn to(&self) -> Option<NameAddr> {
        NameAddr::parse(self.headers.get("To")?).ok()
    }

    /// The first Contact URI.
    pub fn contact(&self) -> Option<NameAddr> {
        NameAddr::parse(self.headers.get_list("Contact").next()?).ok()
    }

    /// Serializes with a correct Content-Length (any Content-Length header is replaced).
    pub fn to_bytes(&self) -> Bytes {
        let mut out = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        write_headers(&mut out, &self.headers, self.body.len());
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }
}

impl Response {
    pub fn top_via(&self) -> Option<Via> {
        Via::parse(self.headers.get_list("Via").next()?).ok()
    }

    pub fn cseq(&self) -> Option<CSeq> {
        CSeq::parse(self.headers.get("CSeq")?).ok()
    }

    pub fn to(&self) -> Option<NameAddr> {
        NameAddr::parse(self.headers.get("To")?).ok()
    }

    pub fn contact(&self) -> Option<NameAddr> {
        NameAddr::parse(self.headers.get_list("Contact").next()?).ok()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A response to `request` copying Via, From, To, Call-ID and CSeq (RFC 3261 §8.2.6.2).
    /// `to_tag` is added to To unless it already carries one (and never on 100).
    pub fn to_request(request: &Request, status: u16, to_tag: Option<&str>) -> Self {
        let mut headers = Headers::new();
        for via in request.headers.get_lines("Via") {
            headers.push("Via", via);
        }
        if let Some(from) = request.headers.get("From") {
            headers.push("From", from);
        }
        if let Some(to) = request.headers.get("To") {
            let value = match (NameAddr::parse(to), to_tag) {
                (Ok(na), Some(tag)) if na.tag().is_none() && status > 100 => {
                    na.with_tag(tag).to_string()
                }
                _ => to.to_owned(),
            };
            headers.push("To", value);
        }
        headers.push("Call-ID", request.call_id());
        if let Some(cseq) = request.headers.get("CSeq") {
            headers.push("CSeq", cseq);
        }
        Self {
            status,
            reason: reason_phrase(status).to_owned(),
            headers,
            body: Bytes::new(),
        }
    }

    /// Serializes with a correct Content-Length.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = format!("SIP/2.0 {} {}\r\n", self.status, self.reason);
        write_headers(&mut out, &self.headers, self.body.len());
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        Bytes::from(out)
    }
}

fn write_headers(out: &mut String, headers: &Headers, body_len: usize) {
    for (name, value) in headers.iter() {
        if !name.eq_ignore_ascii_case("Content-Length") {
            // Writing to a String cannot fail.
            let _ = write!(out, "{name}: {value}\r\n");
        }
    }
    let _ = write!(out, "Content-Length: {body_len}\r\n\r\n");
}

/// The standard reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        422 => "Session Interval Too Small",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: \"Alice, A\" <sip:alice@example.com>;tag=1928\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.0.0.1>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\nEXTRA";

    #[test]
    fn parses_request_and_trims_body_to_content_length() {
        let Message::Request(req) = parse(INVITE.as_bytes()).unwrap() else {
            panic!("not a request")
        };
        assert_eq!(req.method, Method::Invite);
        assert_eq!(&req.body[..], b"v=0\n");
        assert_eq!(req.top_via().unwrap().branch(), Some("z9hG4bK776"));
        assert_eq!(req.from().unwrap().tag(), Some("1928"));
        assert_eq!(req.from().unwrap().display, "\"Alice, A\"");
        assert_eq!(req.cseq().unwrap().seq, 314_159);
        assert!(req.to().unwrap().tag().is_none());
    }

    #[test]
    fn folding_compact_names_and_space_before_colon() {
        let msg = "OPTIONS sip:x@y SIP/2.0\r\nv : SIP/2.0/UDP h;branch=z9hG4bKa\r\n\
f: <sip:a@b>;tag=1\r\nt: <sip:x@y>\r\ni: abc\r\nCSeq: 1\r\n  OPTIONS\r\nl: 0\r\n\r\n";
        let Message::Request(req) = parse(msg.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(req.call_id(), "abc");
        assert_eq!(req.cseq().unwrap().method, Method::Options);
    }

    #[test]
    fn unknown_method_parses_so_it_can_get_405() {
        let msg = INVITE
            .replace("INVITE sip", "NEWMETHOD sip")
            .replace("314159 INVITE", "314159 NEWMETHOD");
        let Message::Request(req) = parse(msg.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(req.method, Method::Other("NEWMETHOD".into()));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"\r\n\r\n"), Err(ParseError::Empty));
        let short = INVITE.replace("Content-Length: 4", "Content-Length: 400");
        assert_eq!(parse(short.as_bytes()), Err(ParseError::Truncated));
        let v = INVITE.replace("INVITE sip:bob@example.com SIP/2.0", "INVITE sip:b SIP/7.0");
        assert_eq!(parse(v.as_bytes()), Err(ParseError::Version));
        let m = INVITE.replace("314159 INVITE", "314159 BYE");
        assert_eq!(parse(m.as_bytes()), Err(ParseError::CSeqMethod));
        let c = INVITE.replace("Call-ID: a84b4c76e66710\r\n", "");
        assert_eq!(
            parse(c.as_bytes()),
            Err(ParseError::MandatoryHeader("Call-ID"))
        );
    }

    #[test]
    fn response_round_trip_keeps_vias_and_adds_tag() {
        let Message::Request(req) = parse(INVITE.as_bytes()).unwrap() else {
            panic!()
        };
        let resp = Response::to_request(&req, 486, Some("xyz"));
        let Message::Response(back) = parse(&resp.to_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(back.status, 486);
        assert_eq!(back.to().unwrap().tag(), Some("xyz"));
        assert_eq!(back.top_via().unwrap().branch(), Some("z9hG4bK776"));
        assert_eq!(back.reason, "Busy Here");
    }

    #[test]
    fn bad_request_copies_headers_when_it_can() {
        let broken = INVITE.replace("Max-Forwards: 70", "Max-Forwards: seventy");
        let err = parse(broken.as_bytes()).unwrap_err();
        let reply = bad_request(broken.as_bytes(), &err).unwrap();
        let Message::Response(r) = parse(&reply).unwrap_or_else(|e| panic!("{e}")) else {
            panic!()
        };
        assert_eq!(r.status, 400);
        assert_eq!(r.headers.get("Call-ID"), Some("a84b4c76e66710"));
        let no_via = INVITE.replace(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776;rport\r\n",
            "",
        );
        assert!(bad_request(no_via.as_bytes(), &ParseError::MandatoryHeader("Via")).is_none());
    }

    #[test]
    fn split_list_respects_quotes_and_brackets() {
        let v: Vec<_> = split_list("\"a,b\" <sip:x@y;p=1,2>, <sip:z@w>").collect();
        assert_eq!(v, ["\"a,b\" <sip:x@y;p=1,2>", "<sip:z@w>"]);
    }

    #[test]
    fn uri_target() {
        let t = parse_uri("sip:agent@127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.tcp),
            ("127.0.0.1", Some(5070), true)
        );
    }
}
