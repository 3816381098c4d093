//! The RTP port allocator: one UDP socket per leg, from `[server] rtp_ports`.
//!
//! [`PortPool::bind`] hands out an [`RtpSocket`]; dropping the socket gives its port back (RAII),
//! so a port cannot leak whatever path a call ends by. Only even ports are used (RFC 3550 §11:
//! RTP on even ports, RTCP, which rgsd ignores, on the odd port above). Freed ports go to the back
//! of the queue, so a port is reused as late as possible and stray packets of an old call rarely
//! reach a new one. A port that another process holds is skipped and tried again later.
//!
//! The range can change while legs hold ports ([`PortPool::set_range`], on reload): new legs
//! bind in the new range at once, and a port outside it goes back to nobody when its leg ends.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::UdpSocket;

/// Why no RTP socket could be had.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every port of the range is in use (by rgsd's legs or by other programs).
    #[error("no free RTP port in the configured range")]
    Exhausted,
    /// Binding failed for a reason other than the port being in use.
    #[error("cannot bind an RTP socket: {0}")]
    Bind(#[source] std::io::Error),
}

/// The free list and the range it is drawn from, shared by the pool and every lease.
#[derive(Debug)]
struct Free {
    ports: Mutex<Ports>,
}

#[derive(Debug)]
struct Ports {
    free: VecDeque<u16>,
    range: RangeInclusive<u16>,
    /// Even ports in `range`.
    size: usize,
}

impl Ports {
    fn new(range: RangeInclusive<u16>) -> Self {
        let free: VecDeque<u16> = even_ports(&range).collect();
        Self {
            size: free.len(),
            free,
            range,
        }
    }

    fn pop_front(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    /// A lease ended: the port is free again if it is still in the range.
    fn give_back(&mut self, port: u16) {
        if self.range.contains(&port) {
            self.free.push_back(port);
        }
    }
}

/// The ports RTP may use in `range`: even ones (RFC 3550 §11), never 0.
fn even_ports(range: &RangeInclusive<u16>) -> impl Iterator<Item = u16> + use<> {
    range.clone().filter(|p| p % 2 == 0 && *p != 0)
}

impl Free {
    // No await while locked, and no code that can panic inside, so a std mutex is right and
    // poisoning cannot happen; recover the guard anyway rather than panic.
    fn lock(&self) -> std::sync::MutexGuard<'_, Ports> {
        self.ports.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands out RTP sockets. Cloning is shallow: every clone shares the same ports.
#[derive(Debug, Clone)]
pub struct PortPool {
    ip: IpAddr,
    free: Arc<Free>,
}

impl PortPool {
    /// A pool of the even ports of `range`, bound on `ip`.
    #[must_use]
    pub fn new(ip: IpAddr, range: RangeInclusive<u16>) -> Self {
        Self {
            ip,
            free: Arc::new(Free {
                ports: Mutex::new(Ports::new(range)),
            }),
        }
    }

    /// Ports in the pool.
    #[cfg(test)]
    #[must_use]
    pub fn size(&self) -> usize {
        self.free.lock().size
    }

    /// Ports not leased now.
    #[must_use]
    pub fn available(&self) -> usize {
        self.free.lock().free.len()
    }

    /// The range ports are drawn from now.
    #[must_use]
    pub fn range(&self) -> RangeInclusive<u16> {
        self.free.lock().range.clone()
    }

    /// Draws ports from `range` from now on (a reload changed `[server] rtp_ports`). Legs keep
    /// the ports they hold; a held port outside the new range is not reused once freed, and a
    /// held port inside it is not handed out twice. Ports still free keep their place in the
    /// queue; new ones join at the back.
    pub fn set_range(&self, range: RangeInclusive<u16>) {
        let mut ports = self.free.lock();
        if ports.range == range {
            return;
        }
        let free: std::collections::HashSet<u16> = ports.free.iter().copied().collect();
        let leased: std::collections::HashSet<u16> = even_ports(&ports.range)
            .filter(|p| !free.contains(p))
            .collect();
        ports.free.retain(|p| range.contains(p));
        let kept: std::collections::HashSet<u16> = ports.free.iter().copied().collect();
        let added: Vec<u16> = even_ports(&range)
            .filter(|p| !kept.contains(p) && !leased.contains(p))
            .collect();
        ports.free.extend(added);
        ports.size = even_ports(&range).count();
        ports.range = range;
    }

    /// Binds a socket on the next free port.
    ///
    /// # Errors
    /// [`PortError::Exhausted`] when every port is leased or held by another program.
    pub async fn bind(&self) -> Result<RtpSocket, PortError> {
        // Each free port is tried at most once per call.
        let attempts = self.available();
        for _ in 0..attempts {
            let Some(port) = self.free.lock().pop_front() else {
                break;
            };
            let lease = PortLease {
                port,
                free: Arc::clone(&self.free),
            };
            match UdpSocket::bind(SocketAddr::new(self.ip, port)).await {
                Ok(socket) => {
                    return Ok(RtpSocket {
                        socket,
                        port,
                        _lease: lease,
                    });
                }
                // Held by someone else: the lease goes back to the end of the queue on drop.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
                Err(e) => return Err(PortError::Bind(e)),
            }
        }
        Err(PortError::Exhausted)
    }
}

/// A port taken from the pool; returned when dropped.
#[derive(Debug)]
struct PortLease {
    port: u16,
    free: Arc<Free>,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        self.free.lock().give_back(self.port);
    }
}

/// A leg's UDP socket. Its port goes back to the pool when this is dropped.
#[derive(Debug)]
pub struct RtpSocket {
    socket: UdpSocket,
    port: u16,
    /// Dropped after `socket` (fields drop in order), so the port is free only once closed.
    _lease: PortLease,
}

impl RtpSocket {
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    #[must_use]
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sends one datagram now, by a plain non-blocking `sendto`, without asking tokio whether
    /// the socket is writable: tokio learns that only from its reactor, so a fresh socket would
    /// refuse its first packet, and a paced sender never waits for writability anyway.
    ///
    /// # Errors
    /// The system's (`WouldBlock` when the send buffer is full: the packet is lost, as the
    /// network would lose it).
    pub fn send_now(&self, packet: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        socket2::SockRef::from(&self.socket).send_to(packet, &to.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A range unlikely to be used by anything else on the machine.
    fn range(start: u16, ports: u16) -> RangeInclusive<u16> {
        start..=start + ports * 2 - 1
    }

    #[tokio::test]
    async fn a_thousand_allocations_leak_nothing() {
        let pool = PortPool::new(LOOPBACK, range(47_000, 8));
        assert_eq!(pool.size(), 8);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1_000 {
            let a = pool.bind().await.unwrap();
            let b = pool.bind().await.unwrap();
            assert_ne!(a.port(), b.port());
            assert_eq!(a.port() % 2, 0);
            seen.insert(a.port());
            assert_eq!(pool.available(), 6);
        }
        assert_eq!(pool.available(), 8);
        assert!(seen.len() > 1, "ports are rotated, not reused at once");
    }

    #[tokio::test]
    async fn exhaustion_and_release() {
        let pool = PortPool::new(LOOPBACK, range(47_100, 3));
        let mut held = Vec::new();
        while let Ok(s) = pool.bind().await {
            held.push(s);
            assert!(held.len() <= 3);
        }
        assert!(!held.is_empty());
        assert!(matches!(pool.bind().await, Err(PortError::Exhausted)));
        let port = held.pop().unwrap().port();
        let again = pool.bind().await.unwrap();
        assert_eq!(again.port(), port);
    }

    #[tokio::test]
    async fn a_port_held_by_another_program_is_skipped() {
        // Take some port from the OS, then build a pool around it.
        let outsider = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let taken = outsider.local_addr().unwrap().port();
        let even = taken - taken % 2;
        let pool = PortPool::new(LOOPBACK, even..=even + 3);
        let mut held = Vec::new();
        while let Ok(s) = pool.bind().await {
            held.push(s);
            assert!(held.len() <= 2);
        }
        let got: Vec<u16> = held.iter().map(RtpSocket::port).collect();
        if taken.is_multiple_of(2) {
            assert!(!got.contains(&taken));
        }
        // The skipped port is still in the pool, not lost.
        assert_eq!(pool.available(), usize::from(taken.is_multiple_of(2)));
    }

    #[tokio::test]
    async fn a_new_range_applies_to_the_next_bind_and_held_ports_are_not_lost_or_doubled() {
        let pool = PortPool::new(LOOPBACK, range(47_400, 2)); // 47400, 47402
        let a = pool.bind().await.unwrap();
        assert_eq!(a.port(), 47_400);
        // Overlapping: 47402 stays, 47400 (held) is in the new range too, 47404 is new.
        pool.set_range(range(47_400, 3));
        assert_eq!(pool.size(), 3);
        assert_eq!(pool.available(), 2);
        let b = pool.bind().await.unwrap();
        let c = pool.bind().await.unwrap();
        assert_eq!((b.port(), c.port()), (47_402, 47_404));
        assert!(matches!(pool.bind().await, Err(PortError::Exhausted)));
        drop(a);
        assert_eq!(pool.bind().await.unwrap().port(), 47_400);
        // Moving away: held ports of the old range are not handed out again once freed.
        pool.set_range(range(47_420, 1));
        assert_eq!(pool.range(), 47_420..=47_421);
        assert_eq!(pool.available(), 1);
        drop((b, c));
        assert_eq!(pool.available(), 1);
        assert_eq!(pool.bind().await.unwrap().port(), 47_420);
    }
}
