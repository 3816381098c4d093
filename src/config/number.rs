//! Telephone numbers: a workflow's `line_uri` (`tel:+14255550100`, RFC 3966) and the number a
//! trunk's Request-URI carries (`tel:+1-425-555-0100`, `sip:+14255550100@host;user=phone`).
//!
//! Both sides are reduced to a [`PhoneNumber`]: the digits after an optional `+`, with the
//! visual separators of RFC 3966 §5.1.1 (`-`, `.`, `(`, `)`, and the space people write)
//! removed and any parameters (`;phone-context=…`, `;ext=…`) ignored. So `+1 (425) 555-0100`,
//! `+14255550100` and `14255550100` are one number. E.164 numbers have at most 15 digits.
//!
//! `config` sits at the bottom of the layer table (`docs/architecture.md`): the compile step
//! and the runtime's routing index both use this.

/// The longest E.164 number (ITU-T E.164 §6).
pub const MAX_DIGITS: usize = 15;

/// A telephone number as routing compares it: its digits (1 to [`MAX_DIGITS`]), packed in a
/// `u64` behind a leading 1 so that leading zeros count (`"0012"` and `"12"` differ). Built
/// without allocating, so a Request-URI is reduced on every INVITE for free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(u64);

impl PhoneNumber {
    /// The number written in `text`: an optional `+`, then digits and visual separators, with
    /// at least one digit and at most [`MAX_DIGITS`]. `None` for anything else (a letter, a
    /// second `+`, an empty number).
    pub fn from_digits(text: &str) -> Option<Self> {
        let text = text.strip_prefix('+').unwrap_or(text);
        let mut packed: u64 = 1;
        let mut digits = 0;
        for c in text.chars() {
            match c {
                '0'..='9' => {
                    digits += 1;
                    if digits > MAX_DIGITS {
                        return None;
                    }
                    packed = packed * 10 + u64::from(c as u8 - b'0');
                }
                '-' | '.' | '(' | ')' | ' ' => {}
                _ => return None,
            }
        }
        (digits > 0).then_some(Self(packed))
    }

    /// The number a Request-URI is for: a `tel:` URI's number, or the user part of a
    /// `sip:`/`sips:` URI when it is a number. Parameters (`;phone-context=…` in either, and
    /// the `sip:` URI's own such as `;user=phone`) and `<>` are ignored; schemes compare without
    /// case. `None` when the URI carries no number.
    pub fn of_request_uri(uri: &str) -> Option<Self> {
        let uri = uri.trim().trim_start_matches('<');
        let (scheme, rest) = uri.split_once(':')?;
        let number = if scheme.eq_ignore_ascii_case("tel") {
            rest
        } else if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            rest.split_once('@')?.0
        } else {
            return None;
        };
        let end = number.find([';', '?', '>']).unwrap_or(number.len());
        Self::from_digits(&number[..end])
    }
}

impl std::fmt::Display for PhoneNumber {
    /// `+` and the digits (E.164 form).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.0.to_string();
        write!(f, "+{}", &text[1..])
    }
}

/// A workflow's `line_uri`: the `tel:` URI as written, and its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineUri {
    pub written: String,
    pub number: PhoneNumber,
}

impl LineUri {
    /// Checks a `line_uri`: `tel:` (any case), `+`, then digits with visual separators. No
    /// parameters: a line is a global number.
    ///
    /// # Errors
    /// A message for the user saying what to write.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .split_once(':')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("tel"))
            .map(|(_, rest)| rest)
            .ok_or_else(|| {
                format!("\"{text}\" is not a tel: URI; write the number as \"tel:+14255550100\"")
            })?;
        if !rest.starts_with('+') {
            return Err(format!(
                "\"{text}\" has no '+': write the full international number, e.g. \"tel:+14255550100\""
            ));
        }
        match PhoneNumber::from_digits(rest) {
            Some(number) => Ok(Self {
                written: text.to_owned(),
                number,
            }),
            None => Err(format!(
                "\"{text}\" is not a telephone number: after \"tel:+\" write 1 to {MAX_DIGITS} digits, optionally separated by '-', '.', '(', ')' or spaces"
            )),
        }
    }
}

impl std::fmt::Display for LineUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(text: &str) -> PhoneNumber {
        PhoneNumber::from_digits(text).unwrap()
    }

    #[test]
    fn request_uris_reduce_to_their_number() {
        let sales = n("+14255550100");
        let cases: &[(&str, Option<PhoneNumber>)] = &[
            ("tel:+14255550100", Some(sales)),
            ("TEL:+14255550100", Some(sales)),
            ("tel:+1-425-555-0100", Some(sales)),
            ("tel:+1.425.555.0100", Some(sales)),
            ("tel:+1(425)555-0100;phone-context=+1", Some(sales)),
            ("tel:14255550100", Some(sales)),
            ("sip:+14255550100@127.0.0.1;user=phone", Some(sales)),
            (
                "sip:+14255550100@127.0.0.1:5060;transport=udp;user=phone",
                Some(sales),
            ),
            ("sips:+14255550100@trunk.example.com", Some(sales)),
            ("SIP:14255550100@10.0.0.1", Some(sales)),
            (
                "sip:+1-425-555-0100;phone-context=+1@h;user=phone",
                Some(sales),
            ),
            ("<sip:+14255550100@h>", Some(sales)),
            ("sip:4255550100@h", Some(n("4255550100"))),
            ("sip:004255550100@h", Some(n("004255550100"))),
            ("sip:sales@127.0.0.1", None),
            ("sip:+1425555O100@h", None),
            ("sip:127.0.0.1", None),
            ("sip:+@h", None),
            ("sip:++14255550100@h", None),
            ("tel:+", None),
            ("tel:+1234567890123456", None),
            ("http:+14255550100", None),
            ("+14255550100", None),
            ("", None),
        ];
        for (uri, want) in cases {
            assert_eq!(PhoneNumber::of_request_uri(uri), *want, "{uri}");
        }
        // Leading zeros count: 00 is not dropped.
        assert_ne!(n("004255550100"), n("4255550100"));
        assert_eq!(n("123456789012345").to_string(), "+123456789012345");
        assert_eq!(n("0012").to_string(), "+0012");
    }

    #[test]
    fn line_uris_are_tel_plus_digits_and_separators() {
        for good in [
            "tel:+14255550100",
            "TEL:+14255550100",
            "Tel:+1 (425) 555-0100",
            "tel:+44.20.7946.0000",
            "tel:+1",
        ] {
            let line = LineUri::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(line.written, good);
        }
        assert_eq!(
            LineUri::parse("tel:+1 (425) 555-0100").unwrap().number,
            n("+14255550100")
        );
        let bad: &[(&str, &str)] = &[
            ("sip:+14255550100@h", "is not a tel: URI"),
            ("+14255550100", "is not a tel: URI"),
            ("tel:14255550100", "has no '+'"),
            ("tel:+1425555010x", "is not a telephone number"),
            (
                "tel:+14255550100;phone-context=+1",
                "is not a telephone number",
            ),
            ("tel:+", "is not a telephone number"),
            ("tel:+-", "is not a telephone number"),
            ("tel:+1234567890123456", "is not a telephone number"),
            ("tel:++1", "is not a telephone number"),
            ("", "is not a tel: URI"),
        ];
        for (text, want) in bad {
            let err = LineUri::parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
