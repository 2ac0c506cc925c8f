//! Answers given before the request body was read, on a kept-alive connection.
//! Docker, containerd and Go's net/http reuse a connection after an error
//! answer, so the server must either read the rest of the body (and keep the
//! connection) or say `Connection: close`; dropping the connection after an
//! answer that promised nothing makes the client's next request fail with EOF.
//!
//! The requests are written by hand on one TCP connection so that the test, not
//! a client library, decides when the connection is reused.

mod common;

use common::TestRegistry;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

/// Bodies small enough that the server reads them to the end and keeps the
/// connection, across the sizes where a dropped connection used to show.
const SIZES: [usize; 3] = [10, 64 * 1024, 1024 * 1024];
const TRIALS: usize = 5;

/// One early answer: the request, and the status it must get.
struct Case {
    what: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    status: u16,
}

/// A response head and body as read off the connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response; `None` if the connection ends before its head does.
async fn read_answer(reader: &mut BufReader<OwnedReadHalf>) -> Option<Answer> {
    let mut status_line = String::new();
    if reader.read_line(&mut status_line).await.ok()? == 0 {
        return None;
    }
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    let length: usize = answer
        .header("content-length")
        .map_or(0, |v| v.parse().unwrap());
    answer.body = vec![0; length];
    reader.read_exact(&mut answer.body).await.ok()?;
    Some(answer)
}

/// Sends `case` with a body of `size` bytes, writing the body while the answer
/// is read (as clients do), then `GET /v2/` on the same connection. Returns the
/// first answer and, unless the first said `Connection: close`, the second.
async fn send_then_reuse(addr: &str, case: &Case, size: usize) -> (Answer, Option<Answer>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {size}\r\n",
        case.method, case.path
    );
    for (name, value) in &case.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        // Written in pieces, as a client streaming a layer does.
        let piece = vec![0x42u8; 16 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(piece.len());
            write.write_all(&piece[..n]).await?;
            left -= n;
        }
        Ok::<_, std::io::Error>(write)
    });
    let first = read_answer(&mut reader)
        .await
        .unwrap_or_else(|| panic!("{} ({size} B): no answer", case.what));
    let closing = first
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if closing {
        return (first, None);
    }
    let mut write = writer
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{} ({size} B): body not taken: {e}", case.what));
    let second = async {
        write
            .write_all(format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        read_answer(&mut reader).await
    }
    .await;
    let second = second.unwrap_or_else(|| {
        panic!(
            "{} ({size} B): answered {} without Connection: close, then dropped the connection",
            case.what, first.status
        )
    });
    (first, Some(second))
}

async fn open_upload(addr: &str) -> String {
    let r = common::api::client()
        .post(format!("http://{addr}/v2/early/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_early_answer_leaves_the_connection_usable() {
    let registry = TestRegistry::start();
    let addr = registry.server.addr().to_owned();
    let unknown = "/v2/early/app/blobs/uploads/3f9c5d36-5d7b-4bd9-9e0a-1b1c7a1d2e3f";
    let missing = format!("sha256:{}", "ab".repeat(32));
    let mut checked = 0;
    for trial in 0..TRIALS {
        for size in SIZES {
            let cases = [
                Case {
                    what: "PATCH out of order",
                    method: "PATCH",
                    path: open_upload(&addr).await,
                    headers: vec![("Content-Range", format!("100-{}", 99 + size))],
                    status: 416,
                },
                Case {
                    what: "PATCH to an unknown upload",
                    method: "PATCH",
                    path: unknown.to_owned(),
                    headers: vec![],
                    status: 404,
                },
                Case {
                    what: "PUT to an unknown upload",
                    method: "PUT",
                    path: format!("{unknown}?digest={missing}"),
                    headers: vec![],
                    status: 404,
                },
                Case {
                    what: "POST with an invalid repository name",
                    method: "POST",
                    path: format!("/v2/Not_Valid/blobs/uploads/?digest={missing}"),
                    headers: vec![],
                    status: 400,
                },
                Case {
                    what: "POST with an invalid digest",
                    method: "POST",
                    path: "/v2/early/app/blobs/uploads/?digest=sha256:nothex".to_owned(),
                    headers: vec![],
                    status: 400,
                },
                Case {
                    what: "PUT of a manifest under an invalid tag",
                    method: "PUT",
                    path: format!("/v2/early/app/manifests/-bad{}", "x".repeat(200)),
                    headers: vec![(
                        "Content-Type",
                        "application/vnd.oci.image.manifest.v1+json".to_owned(),
                    )],
                    status: 400,
                },
                Case {
                    what: "POST mounting an unknown blob (answered 202, body unread)",
                    method: "POST",
                    path: format!("/v2/early/app/blobs/uploads/?mount={missing}&from=early/other"),
                    headers: vec![],
                    status: 202,
                },
            ];
            for case in &cases {
                let (first, second) = send_then_reuse(&addr, case, size).await;
                assert_eq!(
                    first.status,
                    case.status,
                    "{} ({size} B, trial {trial}): {}",
                    case.what,
                    String::from_utf8_lossy(&first.body)
                );
                // Bodies this small are read to the end: the connection is kept.
                let second =
                    second.unwrap_or_else(|| panic!("{} ({size} B): connection closed", case.what));
                assert_eq!(second.status, 200, "{} ({size} B): GET /v2/", case.what);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 7 * SIZES.len() * TRIALS);
}

/// A body larger than the server is willing to read and drop gets an answer
/// that says the connection closes, rather than a silent drop.
#[tokio::test]
async fn a_huge_unread_body_gets_connection_close() {
    let registry = TestRegistry::start();
    let addr = registry.server.addr();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let head = format!(
        "PATCH /v2/early/app/blobs/uploads/3f9c5d36-5d7b-4bd9-9e0a-1b1c7a1d2e3f HTTP/1.1\r\n\
         Host: {addr}\r\nContent-Length: {}\r\n\r\n",
        1u64 << 30
    );
    write.write_all(head.as_bytes()).await.unwrap();
    write.write_all(&[0u8; 4096]).await.unwrap();
    let answer = read_answer(&mut reader).await.expect("an answer");
    assert_eq!(answer.status, 404);
    assert_eq!(answer.header("connection"), Some("close"));
}
