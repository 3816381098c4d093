//! Small helpers every layer may use. This module imports nothing of rgsd, so any module can
//! depend on it without bending the layer table (`docs/architecture.md`, enforced by
//! `tests/layers.rs`).

use tokio::time::Instant;

/// Sleeps until `deadline`, or forever when there is none: the `select!` arm of a loop whose
/// next timer may not exist.
///
/// # Cancel safety
/// Cancel safe: dropping it loses nothing.
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The characters a token is made of: URL-, header- and SIP-token-safe.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` characters of `[0-9A-Za-z]` from the operating system's random source: the one
/// generator for secrets (API tokens) and for identifiers that must not collide or be guessed
/// (SIP Call-IDs, tags, branches, digest cnonces). Each character carries log2(62) ≈ 5.95 bits.
///
/// # Errors
/// The operating system's random source failed (on Linux, only before the kernel's pool is
/// initialised at boot, which `getrandom` waits for).
pub(crate) fn try_random_token(len: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::fill(&mut buf)?;
        // Rejection sampling keeps every character equally likely: 248 = 4 × 62.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

/// [`try_random_token`] for identifiers that cannot wait for an error path (SIP tags and
/// branches). If the operating system's source fails, the token comes from a non-cryptographic
/// generator seeded per thread, which keeps identifiers unique, and the failure is logged.
pub(crate) fn random_token(len: usize) -> String {
    try_random_token(len).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the system random source failed; using a weaker generator");
        std::iter::repeat_with(fastrand::alphanumeric)
            .take(len)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    #[test]
    fn tokens_have_the_length_asked_and_only_alphanumerics() {
        for len in [0, 1, 10, 63, 64, 65, 200] {
            let t = random_token(len);
            assert_eq!(t.len(), len);
            assert!(t.bytes().all(|c| c.is_ascii_alphanumeric()), "{t}");
        }
    }

    #[test]
    fn tokens_differ_and_use_the_whole_alphabet() {
        let tokens: HashSet<String> = (0..1000).map(|_| random_token(10)).collect();
        assert_eq!(tokens.len(), 1000);
        let seen: HashSet<u8> = tokens.iter().flat_map(|t| t.bytes()).collect();
        // 10,000 draws over 62 characters: missing one has probability ~62·e^-161.
        assert_eq!(seen.len(), 62);
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_until_wakes_at_the_deadline_or_never() {
        let start = Instant::now();
        sleep_until(Some(start + Duration::from_secs(5))).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let never = tokio::time::timeout(Duration::from_secs(3600), sleep_until(None)).await;
        assert!(never.is_err());
    }
}
