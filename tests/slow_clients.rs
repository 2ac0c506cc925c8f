//! Slow and greedy clients: hundreds of connections that trickle their headers a
//! byte at a time must not stop normal requests from being answered, and the
//! server closes them once the header deadline (10 s) passes.

mod common;

use common::TestRegistry;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SLOW: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_starve_normal_requests() {
    let registry = TestRegistry::start();
    let addr = registry.server.addr().to_owned();

    // Open the slow connections, each with the first byte of a request.
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(b"G").unwrap();
            s
        })
        .collect();
    let opened = Instant::now();

    let http = common::api::client();
    let mut answered = 0;
    while opened.elapsed() < Duration::from_secs(4) {
        // One more byte on every slow connection, then a normal request.
        for s in &mut slow {
            let _ = s.write_all(b"E");
        }
        let started = Instant::now();
        let r = http.get(registry.server.url("/v2/")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Not a benchmark: a generous bound that only a starved server misses.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a normal request waited {:?}",
            started.elapsed()
        );
        answered += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered >= 10);

    // The trickling connections never finished their headers: they get closed.
    let mut first = slow.swap_remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = first.read(&mut buf).unwrap_or(0);
    assert!(
        opened.elapsed() < Duration::from_secs(14),
        "slow connection held for {:?}",
        opened.elapsed()
    );
    assert!(
        n == 0 || buf.starts_with(b"HTTP/1.1 408"),
        "unexpected answer {:?}",
        &buf[..n]
    );
}

#[test]
fn oversized_headers_get_431() {
    let registry = TestRegistry::start();
    let mut s = TcpStream::connect(registry.server.addr()).unwrap();
    let big = "a".repeat(300 * 1024);
    let _ = s.write_all(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes());
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 431");
}
