//! SIP over TLS against the real `rgsd` binary: `tls:` listeners (with and without a required
//! client certificate), outbound agent legs to an in-test TLS UAS, the failures a TLS peer can
//! cause (expired certificate, unknown CA, wrong name, plain text on a TLS port, a client
//! stalling mid-handshake), `rgsd check` on certificate files, and certificates reloaded on
//! SIGHUP. Certificates are made at test time with rcgen; everything runs on loopback.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rgsd::sip::transport::next_frame;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use common::e2e::{Ua, header};
use common::{Scratch, run_rgsd};

// ---- certificates ---------------------------------------------------------------------------

/// A test CA that issues leaf certificates, written as PEM files into the scratch folder.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// When a leaf certificate is valid.
#[derive(Clone, Copy)]
enum Validity {
    Current,
    /// Expires in this many days.
    ExpiresIn(i64),
    Expired,
}

fn ymd(at: chrono::DateTime<chrono::Utc>) -> (i32, u8, u8) {
    use chrono::Datelike;
    (
        at.year(),
        u8::try_from(at.month()).unwrap(),
        u8::try_from(at.day()).unwrap(),
    )
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let pem = issuer.pem();
        Self { issuer, pem }
    }

    /// A leaf for `names` (DNS names or IP addresses): (certificate PEM, key PEM).
    fn leaf(&self, names: &[&str], validity: Validity) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let now = chrono::Utc::now();
        let (from, until) = match validity {
            Validity::Current => (now - chrono::Days::new(1), now + chrono::Days::new(365)),
            Validity::ExpiresIn(days) => (
                now - chrono::Days::new(1),
                now + chrono::Days::new(u64::try_from(days).unwrap()),
            ),
            Validity::Expired => (now - chrono::Days::new(30), now - chrono::Days::new(2)),
        };
        let (y, m, d) = ymd(from);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = ymd(until);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes `name.crt` and `name.key`; returns their paths.
/// rgsd's own certificate from `ca`, valid now for 127.0.0.1, and its key, written to `scratch`.
fn rgsd_pair(scratch: &Scratch, ca: &Ca) -> (PathBuf, PathBuf) {
    write_pair(scratch, "rgsd", &ca.leaf(&["127.0.0.1"], Validity::Current))
}

fn write_pair(scratch: &Scratch, name: &str, pair: &(String, String)) -> (PathBuf, PathBuf) {
    (
        scratch.write(&format!("{name}.crt"), &pair.0),
        scratch.write(&format!("{name}.key"), &pair.1),
    )
}

fn server_config(pair: &(String, String)) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(pair.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pair.1.as_bytes()).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    )
}

fn client_config(ca_pem: &str, identity: Option<&(String, String)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match identity {
        None => builder.with_no_client_auth(),
        Some(pair) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(pair.0.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(pair.1.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

// ---- SIP over a stream ----------------------------------------------------------------------

/// Reads one SIP message (Content-Length framing), or `None` at EOF, error or `limit`.
async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    limit: Duration,
) -> Option<String> {
    let until = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(Some(frame)) = next_frame(buf) {
            return Some(String::from_utf8_lossy(&frame).into_owned());
        }
        match tokio::time::timeout_at(until, stream.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Reads messages until a final response; returns it.
async fn final_response<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> String {
    loop {
        let msg = read_message(stream, buf, Duration::from_secs(10))
            .await
            .expect("a response");
        if !msg.starts_with("SIP/2.0 1") {
            return msg;
        }
    }
}

fn options(local: SocketAddr, uri: &str) -> String {
    format!(
        "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <{uri}>\r\nCall-ID: opt-{}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

/// OPTIONS over a new TLS connection; the status line of the answer.
async fn options_over_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> String {
    let mut stream = tls_connect(addr, config).await.expect("TLS handshake");
    let local = stream.get_ref().0.local_addr().unwrap();
    stream
        .write_all(options(local, "sip:sales@127.0.0.1").as_bytes())
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let answer = final_response(&mut stream, &mut buf).await;
    answer.lines().next().unwrap_or_default().to_owned()
}

/// The end-entity certificate a `tls:` listener presents now.
async fn presented(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let stream = tls_connect(addr, config).await.expect("TLS handshake");
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---- configuration --------------------------------------------------------------------------

fn config(tls_table: &str, agents: &[&str]) -> String {
    let agents: Vec<String> = agents.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
[server]
sip_listen = ["udp:127.0.0.1:0", "tls:127.0.0.1:0"]
advertised_host = "127.0.0.1"
rtp_ports = [30000, 30999]
http_listen = "127.0.0.1:0"
database = "sqlite://rgsd.db"
trusted_peers = ["127.0.0.0/8"]
tls = {{ {tls_table} }}

[[agent_group]]
name = "Sales agents"
alert_time = "10s"
agents = [{}]

[[queue]]
name = "Sales"
agent_groups = ["Sales agents"]

[[workflow]]
name = "Sales line"
kind = "hunt_group"
uri = "sip:sales@127.0.0.1"
queue = "Sales"
"#,
        agents.join(", ")
    )
}

fn identity_table(cert: &Path, key: &Path) -> String {
    format!(
        "certificate = \"{}\", private_key = \"{}\"",
        cert.display(),
        key.display()
    )
}

// ---- inbound --------------------------------------------------------------------------------

#[test]
fn a_tls_client_gets_options_and_an_invite_answered_over_tls() {
    let scratch = Scratch::new();
    let ca = Ca::new("Test CA");
    let (cert, key) = rgsd_pair(&scratch, &ca);
    let server = common::e2e::start(&scratch, &config(&identity_table(&cert, &key), &[]));
    let addr = server.sip_addr("tls");
    let rt = runtime();
    rt.block_on(async {
        let mut stream = tls_connect(addr, client_config(&ca.pem, None))
            .await
            .expect("handshake with rgsd's certificate, checked against the test CA");
        let local = stream.get_ref().0.local_addr().unwrap();
        let mut buf = BytesMut::new();
        stream
            .write_all(options(local, "sip:sales@127.0.0.1").as_bytes())
            .await
            .unwrap();
        let ok = final_response(&mut stream, &mut buf).await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        let via = header(&ok, "Via").unwrap();
        assert!(via.starts_with("SIP/2.0/TLS"), "{via}");
        // A `sips:` Request-URI is served over TLS (over UDP or TCP it gets 416, see sip_raw).
        stream
            .write_all(options(local, "sips:sales@127.0.0.1").as_bytes())
            .await
            .unwrap();
        let ok = final_response(&mut stream, &mut buf).await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

        // An INVITE for a number nobody serves: answered on the same connection.
        let invite = format!(
            "INVITE sip:nobody@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKi{}\r\nMax-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c1\r\nTo: <sip:nobody@127.0.0.1>\r\nCall-ID: tls-inv-{}@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{local};transport=tls>\r\nContent-Length: 0\r\n\r\n",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        stream.write_all(invite.as_bytes()).await.unwrap();
        let refused = final_response(&mut stream, &mut buf).await;
        assert!(refused.starts_with("SIP/2.0 404"), "{refused}");

        // A call to the hunt group: answered, then ACKed and hung up, all over TLS.
        let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        let call_id = format!("tls-call-{}@127.0.0.1", fastrand::u64(..));
        let head = |method: &str, cseq: u32, to: &str| {
            format!(
                "{method} sip:sales@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKc{}\r\nMax-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=c2\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContact: <sip:caller@{local};transport=tls>\r\n",
                fastrand::u64(..)
            )
        };
        let invite = format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            head("INVITE", 1, "<sip:sales@127.0.0.1>"),
            sdp.len()
        );
        stream.write_all(invite.as_bytes()).await.unwrap();
        let answered = final_response(&mut stream, &mut buf).await;
        assert!(answered.starts_with("SIP/2.0 200"), "{answered}");
        assert_eq!(
            header(&answered, "Contact").unwrap(),
            format!("<sip:rgsd@127.0.0.1:{};transport=tls>", addr.port()),
            "Contact names the TLS listener"
        );
        assert!(answered.contains("m=audio "), "{answered}");
        let to = header(&answered, "To").unwrap().to_owned();
        let ack = format!("{}Content-Length: 0\r\n\r\n", head("ACK", 1, &to));
        stream.write_all(ack.as_bytes()).await.unwrap();
        // With no agent in its group the hunt group ends the call: rgsd's BYE comes over the
        // caller's TLS connection.
        let bye = read_message(&mut stream, &mut buf, Duration::from_secs(10))
            .await
            .expect("rgsd's BYE");
        assert!(
            bye.starts_with(&format!("BYE sip:caller@{local};transport=tls SIP/2.0")),
            "{bye}"
        );
        assert!(
            header(&bye, "Via").unwrap().starts_with("SIP/2.0/TLS "),
            "{bye}"
        );
        let mut ok = String::from("SIP/2.0 200 OK\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            ok.push_str(&format!("{name}: {}\r\n", header(&bye, name).unwrap()));
        }
        ok.push_str("Content-Length: 0\r\n\r\n");
        stream.write_all(ok.as_bytes()).await.unwrap();
    });
}

#[test]
fn client_ca_requires_a_client_certificate_signed_by_it() {
    let scratch = Scratch::new();
    let ca = Ca::new("Trunk CA");
    let (cert, key) = rgsd_pair(&scratch, &ca);
    let ca_file = scratch.write("trunk-ca.pem", &ca.pem);
    let table = format!(
        "{}, client_ca = \"{}\"",
        identity_table(&cert, &key),
        ca_file.display()
    );
    let server = common::e2e::start(&scratch, &config(&table, &[]));
    let addr = server.sip_addr("tls");
    let trunk = ca.leaf(&["trunk.example.com"], Validity::Current);
    let stranger = Ca::new("Other CA").leaf(&["stranger.example.com"], Validity::Current);
    let rt = runtime();
    rt.block_on(async {
        let status = options_over_tls(addr, client_config(&ca.pem, Some(&trunk))).await;
        assert!(status.starts_with("SIP/2.0 200"), "{status}");

        for (who, identity) in [("no certificate", None), ("another CA's", Some(&stranger))] {
            let refused = async {
                let mut s = tls_connect(addr, client_config(&ca.pem, identity)).await?;
                // TLS 1.3: the server's verdict on our certificate arrives after the client's
                // handshake is done, as an alert on the first read.
                let local = s.get_ref().0.local_addr().unwrap();
                s.write_all(options(local, "sip:sales@127.0.0.1").as_bytes())
                    .await?;
                let mut buf = [0u8; 512];
                match s.read(&mut buf).await {
                    Ok(0) => Err(std::io::Error::other("closed")),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            .await;
            assert!(refused.is_err(), "a client with {who} was served");
        }
    });
    server.wait_log("TLS handshake with a client failed");
    let log = server.stderr();
    assert!(
        log.contains("peer=127.0.0.1:") && log.contains("reason="),
        "the refusal names the peer and the reason:\n{log}"
    );
}

#[test]
fn plain_text_and_stalled_handshakes_do_not_stop_the_tls_listener() {
    let scratch = Scratch::new();
    let ca = Ca::new("Test CA");
    let (cert, key) = rgsd_pair(&scratch, &ca);
    let table = format!(
        "{}, handshake_timeout = \"300ms\"",
        identity_table(&cert, &key)
    );
    let server = common::e2e::start(&scratch, &config(&table, &[]));
    let addr = server.sip_addr("tls");
    let rt = runtime();
    rt.block_on(async {
        // Plain SIP sent to the TLS port: the connection is closed, nothing is answered.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        let local = plain.local_addr().unwrap();
        plain
            .write_all(options(local, "sip:sales@127.0.0.1").as_bytes())
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let answer = read_message(&mut plain, &mut buf, Duration::from_secs(5)).await;
        assert!(answer.is_none(), "plain text was answered: {answer:?}");

        // A client that sends the first bytes of a ClientHello and then nothing.
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        // While it stalls, others are served.
        for _ in 0..3 {
            let status = options_over_tls(addr, client_config(&ca.pem, None)).await;
            assert!(status.starts_with("SIP/2.0 200"), "{status}");
        }
        // And after handshake_timeout the stalled one is closed.
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "the stalled connection was not closed: {closed:?}"
        );
    });
    server.wait_log("TLS client did not finish its handshake in time");
    server.wait_log("TLS handshake with a client failed");
    // Still serving after both.
    let status = rt.block_on(options_over_tls(addr, client_config(&ca.pem, None)));
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
}

#[test]
fn a_scanner_sending_plain_text_gets_only_a_few_warning_lines() {
    let scratch = Scratch::new();
    let ca = Ca::new("Test CA");
    let (cert, key) = rgsd_pair(&scratch, &ca);
    let server = common::e2e::start(&scratch, &config(&identity_table(&cert, &key), &[]));
    let addr = server.sip_addr("tls");
    let rt = runtime();
    let failed = "TLS handshake with a client failed";
    rt.block_on(async {
        for _ in 0..20 {
            let mut plain = TcpStream::connect(addr).await.unwrap();
            let local = plain.local_addr().unwrap();
            plain
                .write_all(options(local, "sip:sales@127.0.0.1").as_bytes())
                .await
                .unwrap();
            // Whatever alert comes back, the connection is closed.
            let mut rest = Vec::new();
            let closed =
                tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "the connection was not closed");
        }
    });
    server.wait_log(failed);
    // A served client afterwards: every failure before it has been handled by now.
    let status = rt.block_on(options_over_tls(addr, client_config(&ca.pem, None)));
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
    let log = server.stderr();
    assert_eq!(
        log.matches(failed).count(),
        5,
        "the first five failures of the minute are logged in full, the rest counted:\n{log}"
    );
}

// ---- outbound -------------------------------------------------------------------------------

/// What the in-test TLS UAS saw.
#[derive(Debug)]
enum Seen {
    /// A connection's handshake succeeded.
    Connected,
    HandshakeFailed(String),
    Request(String),
}

/// A TLS UAS on loopback presenting `pair`: it answers INVITE with 200 and SDP, BYE with 200,
/// and reports each request and each failed handshake.
async fn tls_uas(pair: (String, String)) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&pair));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        let _ = tx.send(Seen::Connected);
                        uas_serve(stream, addr, tx).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Seen::HandshakeFailed(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

async fn uas_serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let mut buf = BytesMut::new();
    while let Some(msg) = read_message(&mut stream, &mut buf, Duration::from_secs(30)).await {
        let _ = tx.send(Seen::Request(msg.clone()));
        let method = msg.split_whitespace().next().unwrap_or_default().to_owned();
        if method == "ACK" || msg.starts_with("SIP/2.0") {
            continue;
        }
        let sdp = if method == "INVITE" {
            "v=0\r\no=uas 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        } else {
            ""
        };
        let mut response = String::from("SIP/2.0 200 OK\r\n");
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            for line in msg.lines().filter(|l| {
                l.split_once(':')
                    .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            }) {
                response.push_str(line);
                response.push_str("\r\n");
            }
        }
        let to = header(&msg, "To").unwrap_or_default();
        let to = if to.contains("tag=") {
            to.to_owned()
        } else {
            format!("{to};tag=uas1")
        };
        response.push_str(&format!("To: {to}\r\nContact: <sips:agent@{addr}>\r\n"));
        if !sdp.is_empty() {
            response.push_str("Content-Type: application/sdp\r\n");
        }
        response.push_str(&format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The next thing the UAS sees within `limit`.
fn next_seen(
    rt: &tokio::runtime::Runtime,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    limit: Duration,
) -> Option<Seen> {
    rt.block_on(async { tokio::time::timeout(limit, rx.recv()).await.ok().flatten() })
}

#[test]
fn an_agent_leg_goes_out_over_tls_with_the_peer_certificate_checked() {
    let scratch = Scratch::new();
    let ca = Ca::new("Agents CA");
    let (cert, key) = rgsd_pair(&scratch, &ca);
    let rt = runtime();
    let (uas, mut seen) = rt.block_on(tls_uas(ca.leaf(&["127.0.0.1"], Validity::Current)));
    let ca_file = scratch.write("agents-ca.pem", &ca.pem);
    let table = format!(
        "{}, ca = \"{}\"",
        identity_table(&cert, &key),
        ca_file.display()
    );
    let agent = format!("sips:agent@{uas}");
    let server = common::e2e::start(&scratch, &config(&table, &[&agent]));
    let tls_port = server.sip_addr("tls").port();

    let mut caller = Ua::new(server.sip_addr("udp"));
    caller.call("sip:sales@127.0.0.1");
    assert!(matches!(
        next_seen(&rt, &mut seen, Duration::from_secs(5)),
        Some(Seen::Connected)
    ));
    let Some(Seen::Request(invite)) = next_seen(&rt, &mut seen, Duration::from_secs(5)) else {
        panic!("the UAS got no INVITE");
    };
    assert!(
        invite.starts_with(&format!("INVITE {agent} SIP/2.0")),
        "{invite}"
    );
    let via = header(&invite, "Via").unwrap();
    assert!(via.starts_with("SIP/2.0/TLS 127.0.0.1:"), "{via}");
    let contact = header(&invite, "Contact").unwrap();
    assert_eq!(
        contact,
        format!("<sips:rgsd@127.0.0.1:{tls_port}>"),
        "a SIPS dialog's Contact is a SIPS URI on the TLS listener"
    );
    // The ACK comes over the same, kept, connection.
    let Some(Seen::Request(ack)) = next_seen(&rt, &mut seen, Duration::from_secs(5)) else {
        panic!("no ACK over the TLS connection");
    };
    assert!(ack.starts_with("ACK "), "{ack}");
    // The caller hangs up: the BYE to the agent reuses the connection too (no second
    // handshake comes before it).
    let bye = caller.request("BYE", &caller.target.clone(), 2, "", false);
    caller.send(&bye);
    let Some(Seen::Request(agent_bye)) = next_seen(&rt, &mut seen, Duration::from_secs(5)) else {
        panic!("no BYE to the agent");
    };
    assert!(agent_bye.starts_with("BYE "), "{agent_bye}");
    assert_eq!(
        header(&agent_bye, "Call-ID"),
        header(&invite, "Call-ID"),
        "the BYE ends the agent's dialog"
    );
    assert!(
        !server
            .stderr()
            .contains("TLS connection to the peer refused"),
        "{}",
        server.stderr()
    );
}

#[test]
fn an_agent_with_a_bad_certificate_is_refused_and_the_call_goes_on() {
    let scratch = Scratch::new();
    let ca = Ca::new("Agents CA");
    let (cert, key) = rgsd_pair(&scratch, &ca);
    let ca_file = scratch.write("agents-ca.pem", &ca.pem);
    let table = format!(
        "{}, ca = \"{}\"",
        identity_table(&cert, &key),
        ca_file.display()
    );
    let rt = runtime();
    let cases = [
        (
            "expired",
            ca.leaf(&["127.0.0.1"], Validity::Expired),
            "the peer's certificate has expired",
        ),
        (
            "unknown CA",
            Ca::new("Some other CA").leaf(&["127.0.0.1"], Validity::Current),
            "the peer's certificate is signed by an unknown CA",
        ),
        (
            "wrong name",
            ca.leaf(&["127.0.0.2", "other.example.com"], Validity::Current),
            "the peer's certificate is not valid for the name we connected to",
        ),
    ];
    for (case, pair, reason) in cases {
        let (uas, mut seen) = rt.block_on(tls_uas(pair));
        let agent = format!("sip:agent@{uas};transport=tls");
        let dir = Scratch::new();
        let server = common::e2e::start(&dir, &config(&table, &[&agent]));
        let mut caller = Ua::new(server.sip_addr("udp"));
        let call = std::thread::spawn(move || caller.call_status("sip:sales@127.0.0.1"));
        // rgsd tries the agent: the UAS sees the handshake fail, and never a request.
        match next_seen(&rt, &mut seen, Duration::from_secs(5)) {
            Some(Seen::HandshakeFailed(why)) => {
                assert!(!why.is_empty(), "{case}");
            }
            other => panic!("{case}: the UAS saw {other:?}"),
        }
        server.wait_log(reason);
        let log = server.stderr();
        let line = log
            .lines()
            .find(|l| l.contains(reason))
            .unwrap_or_default()
            .to_owned();
        assert!(
            line.contains("WARN")
                && line.contains(&format!("peer={uas}"))
                && line.contains("name=127.0.0.1"),
            "{case}: {line}"
        );
        // The daemon goes on: the caller's transaction is alive and OPTIONS still answered.
        let mut probe = Ua::new(server.sip_addr("udp"));
        probe.send(&probe.request("OPTIONS", "sip:sales@127.0.0.1", 1, "", false));
        let answer = probe
            .recv(Instant::now() + Duration::from_secs(5))
            .unwrap_or_default();
        assert!(answer.starts_with("SIP/2.0 200"), "{case}: {answer}");
        assert!(
            next_seen(&rt, &mut seen, Duration::from_millis(200))
                .is_none_or(|s| matches!(s, Seen::HandshakeFailed(_))),
            "{case}: a request reached the peer"
        );
        // The caller's call was answered (the hunt group holds it in the queue); the failed
        // leg did not end it.
        assert_eq!(call.join().unwrap(), 200, "{case}");
        drop(server);
    }
}

// ---- rgsd check ----------------------------------------------------------------------------

#[test]
fn check_prints_names_and_expiry_and_refuses_expired_or_mismatched_files() {
    let scratch = Scratch::new();
    let ca = Ca::new("Test CA");
    let check = |table: &str| {
        let path = scratch.write("rgsd.toml", config(table, &[]));
        run_rgsd(&["check", "--config", path.to_str().unwrap()])
    };

    let (cert, key) = write_pair(
        &scratch,
        "soon",
        &ca.leaf(&["sip.example.com", "127.0.0.1"], Validity::ExpiresIn(10)),
    );
    let (status, out, err) = check(&identity_table(&cert, &key));
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("names sip.example.com, 127.0.0.1; expires"),
        "{out}"
    );
    assert!(
        err.contains("warning") && err.contains("within 30 days"),
        "a certificate expiring in 10 days is warned about: {err}"
    );

    let (cert, key) = write_pair(
        &scratch,
        "fine",
        &ca.leaf(&["127.0.0.1"], Validity::Current),
    );
    let (status, out, err) = check(&identity_table(&cert, &key));
    assert!(status.success(), "{out}{err}");
    assert!(!err.contains("within 30 days"), "{err}");

    let (expired, expired_key) =
        write_pair(&scratch, "old", &ca.leaf(&["127.0.0.1"], Validity::Expired));
    let (status, _, err) = check(&identity_table(&expired, &expired_key));
    assert!(!status.success());
    assert!(
        err.contains("server.tls.certificate") && err.contains("expired"),
        "{err}"
    );

    let (_, other_key) = write_pair(
        &scratch,
        "other",
        &ca.leaf(&["x.example"], Validity::Current),
    );
    let (status, _, err) = check(&identity_table(&cert, &other_key));
    assert!(!status.success());
    assert!(err.contains("does not belong to the certificate"), "{err}");

    // A tls: listener with no certificate names the key to add.
    let path = scratch.write("bare.toml", config("", &[]).replace("tls = {  }\n", ""));
    let (status, _, err) = run_rgsd(&["check", "--config", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(
        err.contains("server.tls") && err.contains("certificate"),
        "{err}"
    );
}

// ---- reload ---------------------------------------------------------------------------------

#[test]
fn sighup_loads_a_new_certificate_and_keeps_the_running_one_when_the_new_is_broken() {
    let scratch = Scratch::new();
    let ca = Ca::new("Test CA");
    let first = ca.leaf(&["127.0.0.1"], Validity::Current);
    let (cert, key) = write_pair(&scratch, "rgsd", &first);
    let server = common::e2e::start(&scratch, &config(&identity_table(&cert, &key), &[]));
    let addr = server.sip_addr("tls");
    let rt = runtime();
    let der = |pem: &str| {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    };
    let client = client_config(&ca.pem, None);
    assert_eq!(rt.block_on(presented(addr, client.clone())), der(&first.0));

    // A connection made before the reload keeps working after it.
    let mut before = rt.block_on(tls_connect(addr, client.clone())).unwrap();

    let second = ca.leaf(&["127.0.0.1"], Validity::Current);
    write_pair(&scratch, "rgsd", &second);
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_log("reloaded:");
    assert_eq!(rt.block_on(presented(addr, client.clone())), der(&second.0));

    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    server.signal(nix::sys::signal::Signal::SIGHUP);
    server.wait_log("reload refused");
    let log = server.stderr();
    assert!(log.contains("server.tls.certificate"), "{log}");
    assert_eq!(
        rt.block_on(presented(addr, client.clone())),
        der(&second.0),
        "the running certificate stays"
    );

    let status = rt.block_on(async {
        let local = before.get_ref().0.local_addr().unwrap();
        before
            .write_all(options(local, "sip:sales@127.0.0.1").as_bytes())
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        final_response(&mut before, &mut buf).await
    });
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
}
