//! A tiny authoritative name server on loopback UDP for tests: each query is answered with the
//! zone's records of that name and type (NOERROR with no answer otherwise), and every question
//! is logged. Built on `hickory-proto`'s message types, the same the resolver under test uses.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, OpCode};
use hickory_resolver::proto::rr::rdata::{A, NAPTR, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

fn name(text: &str) -> Name {
    Name::from_ascii(format!("{}.", text.trim_end_matches('.'))).unwrap()
}

/// The records a [`DnsServer`] serves.
#[derive(Default)]
pub struct Zone {
    records: Vec<Record>,
}

impl Zone {
    pub fn a(mut self, owner: &str, ip: Ipv4Addr) -> Self {
        let data = RData::A(A(ip));
        self.records.push(Record::from_rdata(name(owner), 60, data));
        self
    }

    pub fn srv(mut self, owner: &str, priority: u16, weight: u16, port: u16, target: &str) -> Self {
        let data = RData::SRV(SRV::new(priority, weight, port, name(target)));
        self.records.push(Record::from_rdata(name(owner), 60, data));
        self
    }

    /// An `s` (SRV) NAPTR record for `service` (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`).
    pub fn naptr(mut self, owner: &str, order: u16, service: &str, replacement: &str) -> Self {
        let data = RData::NAPTR(NAPTR::new(
            order,
            10,
            b"s".to_vec().into(),
            service.as_bytes().to_vec().into(),
            Vec::new().into(),
            name(replacement),
        ));
        self.records.push(Record::from_rdata(name(owner), 60, data));
        self
    }

    /// Serves the zone on a free loopback port until the server is dropped.
    pub fn serve(self) -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, done) = (Arc::clone(&queries), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !done.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut reply = Message::response(query.metadata.id, OpCode::Query);
                reply.metadata.authoritative = true;
                reply.metadata.recursion_desired = query.metadata.recursion_desired;
                reply.metadata.recursion_available = true;
                for q in &query.queries {
                    log.lock().unwrap().push((
                        q.name.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
                        q.query_type,
                    ));
                    reply.add_query(q.clone());
                    let answers: Vec<Record> = self
                        .records
                        .iter()
                        .filter(|r| r.name == q.name && r.data.record_type() == q.query_type)
                        .cloned()
                        .collect();
                    reply.add_answers(answers);
                }
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, from);
                }
            }
        });
        DnsServer {
            addr,
            queries,
            stop,
        }
    }
}

/// A running [`Zone`].
pub struct DnsServer {
    pub addr: SocketAddr,
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// Every question asked so far: (name without the final dot, type).
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
