//! Slow request bodies and connection bounds, over raw TCP: a body that stalls gets 408 and
//! its connection closed; an address past `server.connections_per_address_max` gets 429 and
//! its connection closed, while other addresses are served.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use surge::config::Settings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{eventually_that, spawn_app_with, Backend, Options, TestApp};

/// How long a raw read may wait before the test fails rather than hangs; only a failing
/// server ever reaches it.
const READ_BOUND: Duration = Duration::from_secs(15);

/// A response as read off the wire.
struct RawResponse {
    status: u16,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        serde_json::from_slice(&self.body).expect("a problem+json body")
    }
}

fn server_address(app: &TestApp) -> SocketAddr {
    app.base
        .trim_start_matches("http://")
        .parse()
        .expect("the base is an address")
}

/// A connection to the app from `source` (any address of 127.0.0.0/8 is this host).
async fn connect_from(app: &TestApp, source: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(IpAddr::from(source), 0))
        .expect("bind a loopback source");
    socket.connect(server_address(app)).await.expect("connects")
}

/// Reads one response (headers, then `Content-Length` bytes of body).
async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = read_some(stream, &mut bytes).await;
        assert!(read > 0, "closed before a response: {bytes:?}");
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().expect("a length"));
    while bytes.len() < head_end + length {
        let read = read_some(stream, &mut bytes).await;
        assert!(read > 0, "closed inside the body");
    }
    RawResponse {
        status,
        headers,
        body: bytes[head_end..head_end + length].to_vec(),
    }
}

async fn read_some(stream: &mut TcpStream, into: &mut Vec<u8>) -> usize {
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(READ_BOUND, stream.read(&mut buffer))
        .await
        .expect("the server answers or closes in time")
        .expect("a read");
    into.extend_from_slice(&buffer[..read]);
    read
}

/// The server closed the connection: a read returns end of stream.
async fn assert_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    assert_eq!(
        read_some(stream, &mut rest).await,
        0,
        "still open: {rest:?}"
    );
}

async fn get(stream: &mut TcpStream, path: &str) -> RawResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: surge\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("a request is sent");
    read_response(stream).await
}

async fn healthz(stream: &mut TcpStream) -> RawResponse {
    get(stream, "/healthz").await
}

/// A server on SQLite (connections do not depend on the store).
async fn spawn_tweaked(tweak: fn(&mut Settings)) -> TestApp {
    spawn_app_with(Backend::Sqlite, Options::tweaked(tweak))
        .await
        .expect("SQLite needs no configuration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_gets_408_and_its_connection_closed() {
    let app = spawn_tweaked(|settings| settings.server.body_read_timeout_secs = 1).await;
    let mut stream = connect_from(&app, [127, 0, 0, 1]).await;
    stream
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: surge\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
        )
        .await
        .expect("headers and one byte are sent");
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 408);
    assert_eq!(response.header("connection"), Some("close"));
    let problem = response.problem();
    assert_eq!(problem["code"], "REQUEST_TIMEOUT", "{problem}");
    assert_closed(&mut stream).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_past_its_connection_bound_is_closed_at_once_and_others_are_served() {
    let app = spawn_tweaked(|settings| settings.server.connections_per_address_max = 3).await;
    let local = [127, 0, 0, 1];
    let mut held = Vec::new();
    // One at a time, each answered, so the server has counted it before the next opens.
    for _ in 0..3 {
        let mut stream = connect_from(&app, local).await;
        assert_eq!(healthz(&mut stream).await.status, 200);
        held.push(stream);
    }
    // It sends nothing: were it left open until its request came, it would hold a slot of the
    // global bound for the whole header timeout and then get a 408. It is shut at once, with
    // no byte sent.
    let mut fourth = connect_from(&app, local).await;
    assert_closed(&mut fourth).await;
    assert_eq!(app.services.connections.refused_total(), 1);

    let counts = app.services.connections.clone();
    let local_ip = IpAddr::from(local);
    eventually_that("the refused connection is counted out", || {
        let open = counts.open_from(local_ip);
        async move { open == 3 }
    })
    .await;

    let mut elsewhere = connect_from(&app, [127, 0, 0, 2]).await;
    assert_eq!(healthz(&mut elsewhere).await.status, 200);
    let metrics = get(&mut elsewhere, "/metrics").await;
    let text = String::from_utf8(metrics.body).expect("text");
    assert!(
        text.contains("\nsurge_http_connections_refused_total 1\n"),
        "{text}"
    );
    assert!(text.contains("\nsurge_http_connections_open 4\n"), "{text}");

    drop(held.pop());
    eventually_that("the closed connections are counted out", || {
        let open = counts.open_from(local_ip);
        async move { open == 2 }
    })
    .await;
    let mut again = connect_from(&app, local).await;
    assert_eq!(healthz(&mut again).await.status, 200);
    drop((held, again, elsewhere));
    eventually_that("memory follows open connections", || {
        let addresses = counts.addresses();
        async move { addresses == 0 }
    })
    .await;
    app.stop().await;
}
