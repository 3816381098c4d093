//! Parsing and building a typical INVITE (the work the endpoint does per inbound call setup).
//!
//! `cargo bench --bench sip_parse`
//!
//! Measured 2026-11-23 on the shared 2-core dev machine
//! (`cargo bench --bench sip_parse -- --warm-up-time 1 --measurement-time 3`):
//! parse INVITE 3.04 µs, build 200 OK 1.05 µs, serialize INVITE 0.60 µs (criterion medians).

use criterion::{Criterion, criterion_group, criterion_main};
use rgsd::sip::message::{Message, Response, parse};
use std::hint::black_box;

const INVITE: &[u8] = b"INVITE sip:sales@192.0.2.10 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK74bf9;rport\r\n\
Via: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bK1a2b3;received=192.0.2.31\r\n\
Record-Route: <sip:192.0.2.20;lr>\r\n\
Max-Forwards: 69\r\n\
From: \"Alice Example\" <sip:+15551234567@192.0.2.30;user=phone>;tag=9fxced76sl\r\n\
To: <sip:sales@192.0.2.10>\r\n\
Call-ID: 3848276298220188511@192.0.2.30\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:+15551234567@192.0.2.30:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n\
Supported: timer, replaces\r\n\
Session-Expires: 1800\r\n\
User-Agent: ExamplePBX/1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 130\r\n\r\n\
v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.30\r\ns=-\r\nc=IN IP4 192.0.2.30\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=sendrecv\r\n";

fn bench(c: &mut Criterion) {
    c.bench_function("parse INVITE", |b| {
        b.iter(|| parse(black_box(INVITE)).expect("parses"));
    });
    let Ok(Message::Request(invite)) = parse(INVITE) else {
        panic!("bench INVITE does not parse")
    };
    c.bench_function("build 200 OK for INVITE", |b| {
        b.iter(|| {
            let mut ok = Response::to_request(black_box(&invite), 200, Some("a8f3k2"));
            ok.headers.push("Contact", "<sip:rgsd@192.0.2.10:5060>");
            ok.headers.push("Content-Type", "application/sdp");
            ok.body = invite.body.clone();
            ok.to_bytes()
        });
    });
    c.bench_function("serialize INVITE", |b| {
        b.iter(|| black_box(&invite).to_bytes());
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
