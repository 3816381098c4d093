//! Edge policy, pure: who may place calls, how fast a source may send, how many calls at once.
//!
//! The endpoint asks these before any request reaches a transaction user. Nothing here does I/O
//! or reads a clock; time comes in as a parameter.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tokio::time::Instant;

use crate::config::model::SipRateLimit;

/// Whether `source` is inside one of the trusted networks.
pub(crate) fn is_trusted(trusted: &[IpNet], source: IpAddr) -> bool {
    let source = match source {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&source))
}

/// Token-bucket limits for requests from one source address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: f64,
}

impl From<SipRateLimit> for RateLimit {
    fn from(limit: SipRateLimit) -> Self {
        Self {
            per_second: f64::from(limit.per_second),
            burst: f64::from(limit.burst),
        }
    }
}

impl Default for RateLimit {
    /// The configuration's default (`[server] sip_rate_limit` absent): 50 requests/s, bursts
    /// of 200.
    fn default() -> Self {
        SipRateLimit::default().into()
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// When we last logged this source as an offender (one line per minute).
    logged: Option<Instant>,
}

/// What the limiter says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Drop it; this is the first refusal for this source in a minute, so log one line.
    DropAndLog,
    /// Drop it: too many sources are sending at once to track another; the first in a minute,
    /// so log one line.
    DropTableFullAndLog,
    /// Drop it quietly.
    Drop,
}

/// Per-source token buckets.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
    /// When the table was last found full of active sources: until they can have gone idle, a
    /// new source is refused without scanning the table again.
    full_at: Option<Instant>,
    /// The last time a refusal for a full table was logged.
    full_logged: Option<Instant>,
}

/// At most this many sources are tracked: when the table is full, the sources idle long enough
/// to have a full bucket again are forgotten; if none is, a new source is refused until some
/// are (a flood from many addresses, spoofed or not, cannot grow the table or make each packet
/// scan it).
const MAX_TRACKED: usize = 10_000;
const LOG_EVERY: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// The limit this limiter applies.
    pub(crate) fn limit(&self) -> RateLimit {
        self.limit
    }

    pub(crate) fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
            full_at: None,
            full_logged: None,
        }
    }

    pub(crate) fn check(&mut self, source: IpAddr, now: Instant) -> Verdict {
        if self.buckets.len() >= MAX_TRACKED && !self.buckets.contains_key(&source) {
            let idle = Duration::from_secs_f64(self.limit.burst / self.limit.per_second.max(0.001));
            if self.full_at.is_none_or(|at| now.duration_since(at) >= idle) {
                self.buckets
                    .retain(|_, b| now.duration_since(b.last) < idle);
                self.full_at = (self.buckets.len() >= MAX_TRACKED).then_some(now);
            }
            if self.buckets.len() >= MAX_TRACKED {
                return match self.full_logged {
                    Some(at) if now.duration_since(at) < LOG_EVERY => Verdict::Drop,
                    _ => {
                        self.full_logged = Some(now);
                        Verdict::DropTableFullAndLog
                    }
                };
            }
        }
        let limit = self.limit;
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: limit.burst,
            last: now,
            logged: None,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Allow;
        }
        match bucket.logged {
            Some(at) if now.duration_since(at) < LOG_EVERY => Verdict::Drop,
            _ => {
                bucket.logged = Some(now);
                Verdict::DropAndLog
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10,000 sources all sending: a new one is refused (the table does not grow), without a
    /// scan per packet; once the others have been quiet long enough, it gets in.
    #[test]
    fn a_full_table_of_active_sources_refuses_new_ones_and_stays_bounded() {
        let limit = RateLimit {
            per_second: 10.0,
            burst: 20.0,
        };
        let mut limiter = RateLimiter::new(limit);
        let t0 = Instant::now();
        let addr = |i: usize| {
            let i = u32::try_from(i).unwrap();
            IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i))
        };
        for i in 0..MAX_TRACKED {
            assert_eq!(limiter.check(addr(i), t0), Verdict::Allow);
        }
        let newcomer = addr(MAX_TRACKED + 1);
        let soon = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check(newcomer, soon), Verdict::DropTableFullAndLog);
        for k in 0..1_000 {
            assert_eq!(
                limiter.check(addr(MAX_TRACKED + 2 + k), soon),
                Verdict::Drop
            );
        }
        assert_eq!(
            limiter.buckets.len(),
            MAX_TRACKED,
            "the table never grows past its size"
        );
        // A tracked source still gets its share.
        assert_eq!(limiter.check(addr(7), soon), Verdict::Allow);
        // Quiet for burst / rate = 2 s: the idle ones are forgotten, the newcomer gets in.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(limiter.check(newcomer, later), Verdict::Allow);
        assert!(limiter.buckets.len() < 10, "{}", limiter.buckets.len());
    }

    #[test]
    fn trust_by_network_including_v4_mapped() {
        let nets: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        assert!(is_trusted(&nets, "127.0.0.2".parse().unwrap()));
        assert!(is_trusted(&nets, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(is_trusted(&nets, "fd00::1".parse().unwrap()));
        assert!(!is_trusted(&nets, "10.0.0.1".parse().unwrap()));
        assert!(!is_trusted(&[], "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bucket_allows_burst_then_refills_and_logs_once_a_minute() {
        let mut rl = RateLimiter::new(RateLimit {
            per_second: 10.0,
            burst: 5.0,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(rl.check(ip, t0), Verdict::Allow);
        }
        assert_eq!(rl.check(ip, t0), Verdict::DropAndLog);
        assert_eq!(rl.check(ip, t0), Verdict::Drop);
        // 100 ms later one token is back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(rl.check(ip, t1), Verdict::Allow);
        assert_eq!(rl.check(ip, t1), Verdict::Drop);
        // Another source is unaffected.
        assert_eq!(rl.check("192.0.2.2".parse().unwrap(), t1), Verdict::Allow);
        // A minute after the first log line, the next refusal logs again.
        let t2 = t0 + Duration::from_secs(61);
        for _ in 0..5 {
            rl.check(ip, t2);
        }
        assert_eq!(rl.check(ip, t2), Verdict::DropAndLog);
    }
}
