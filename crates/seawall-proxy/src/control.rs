//! One blocking HTTP/1.1 call to the control plane, for the sidecar's control link.
//!
//! The control link (snapshot long-poll, lease, status reports) is Python,
//! but a Python HTTP stack costs an idle sidecar 5-10 MB (`ssl` alone, which
//! `asyncio` imports, is 5 MB). The core already carries tokio and hyper, so
//! the link's calls go through here: one connection per call on a
//! current-thread runtime of its own, the caller's thread blocked (and the
//! GIL released by the binding) until the answer or the timeout.
//!
//! Only `http://` URLs: the control plane's API is plain HTTP, authenticated
//! by the join token.
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The largest answer read: a snapshot of a big mesh, with room to spare.
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why a call got no answer.
#[derive(Debug)]
pub enum CallError {
    /// The method, URL or a header is not usable (nothing was sent).
    Invalid(String),
    /// Connecting, sending or reading failed.
    Io(String),
    /// No whole answer within the timeout.
    Timeout(Duration),
    /// The answer's body is over [`MAX_ANSWER`].
    TooLarge,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Invalid(why) => f.write_str(why),
            CallError::Io(why) => f.write_str(why),
            CallError::Timeout(after) => write!(f, "no answer within {:?}", after),
            CallError::TooLarge => write!(f, "the answer is over {MAX_ANSWER} bytes"),
        }
    }
}

impl std::error::Error for CallError {}

/// A status and a whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    /// `Retry-After` in seconds, when the answer had one (delta-seconds only).
    pub retry_after: Option<u64>,
}

/// `method url` with `headers` and `body`, answered within `timeout` (connecting included).
pub fn call(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, CallError> {
    let (authority, request) = build(method, url, headers, body, false)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| CallError::Io(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(async move {
        tokio::time::timeout(timeout, exchange(&authority, request))
            .await
            .unwrap_or(Err(CallError::Timeout(timeout)))
    })
}

/// The request of a call: the authority to connect to, and the request
/// (`keep_alive`: for a connection that carries more than one).
pub(crate) fn build(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
    keep_alive: bool,
) -> Result<(String, Request<Full<Bytes>>), CallError> {
    let invalid = |what: String| CallError::Invalid(what);
    let uri: Uri = url
        .parse()
        .map_err(|e| invalid(format!("{url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(invalid(format!("{url:?}: only http:// URLs are called")));
    }
    let host = uri
        .host()
        .ok_or_else(|| invalid(format!("{url:?} has no host")))?;
    let port = uri.port_u16().unwrap_or(80);
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| invalid(format!("{method:?} is not an HTTP method")))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, &authority);
    if !keep_alive {
        builder = builder.header(http::header::CONNECTION, "close");
    }
    for (name, value) in headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let body: Bytes = body.into();
    if !body.is_empty() {
        builder = builder.header(http::header::CONTENT_LENGTH, body.len());
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| invalid(format!("{url}: {e}")))?;
    Ok((authority, request))
}

/// Connect to `authority`, send `request`, read the whole answer (no timeout: the caller's).
pub(crate) async fn exchange(
    authority: &str,
    request: Request<Full<Bytes>>,
) -> Result<Answer, CallError> {
    let mut conn = Connection::open(authority).await?;
    conn.send(request).await
}

/// One HTTP/1.1 connection, for calls one after the other (keep-alive).
pub(crate) struct Connection {
    authority: String,
    send: http1::SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Connect to `authority` (`host:port`).
    pub(crate) async fn open(authority: &str) -> Result<Connection, CallError> {
        let io = |e: &dyn std::fmt::Display| CallError::Io(format!("{authority}: {e}"));
        let stream = match authority.parse::<std::net::SocketAddr>() {
            Ok(sock) => TcpStream::connect(sock).await,
            Err(_) => TcpStream::connect(authority).await,
        }
        .map_err(|e| io(&e))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| io(&e))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            authority: authority.to_owned(),
            send,
            driver,
        })
    }

    /// Where it goes.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// Whether it can carry another request (the server has not closed it).
    pub(crate) fn is_open(&self) -> bool {
        !self.send.is_closed() && !self.driver.is_finished()
    }

    /// Send `request` and read the whole answer.
    pub(crate) async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> Result<Answer, CallError> {
        let authority = &self.authority;
        let io = |e: &dyn std::fmt::Display| CallError::Io(format!("{authority}: {e}"));
        let response = self.send.send_request(request).await.map_err(|e| io(&e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    CallError::TooLarge
                } else {
                    io(&e)
                }
            })?
            .to_bytes();
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn serve_once(answer: &'static [u8]) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().expect("accept");
            let mut got = vec![0u8; 4096];
            let n = sock.read(&mut got).expect("read");
            got.truncate(n);
            sock.write_all(answer).expect("write");
            got
        });
        (url, handle)
    }

    #[test]
    fn a_call_sends_the_method_headers_and_body_and_reads_the_answer() {
        let (url, server) = serve_once(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok");
        let answer = call(
            "POST",
            &format!("{url}/v1/instances?x=1"),
            &[("authorization".into(), "Bearer t".into())],
            b"{}".to_vec(),
            Duration::from_secs(5),
        )
        .expect("answer");
        assert_eq!(answer.status, 201);
        assert_eq!(&answer.body[..], b"ok");
        let sent = String::from_utf8(server.join().expect("server")).expect("utf-8");
        assert!(
            sent.starts_with("POST /v1/instances?x=1 HTTP/1.1\r\n"),
            "{sent}"
        );
        assert!(sent.contains("authorization: Bearer t\r\n"), "{sent}");
        assert!(sent.ends_with("\r\n\r\n{}"), "{sent}");
    }

    #[test]
    fn only_http_urls_are_called() {
        let err = call(
            "GET",
            "https://127.0.0.1:1/",
            &[],
            Vec::new(),
            Duration::from_secs(1),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("only http://"), "{err}");
        let err = call(
            "G T",
            "http://127.0.0.1:1/",
            &[],
            Vec::new(),
            Duration::from_secs(1),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("not an HTTP method"), "{err}");
    }

    #[test]
    fn a_refused_connection_and_a_silent_server_are_errors() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = format!("http://127.0.0.1:{port}/");
        let err = call("GET", &url, &[], Vec::new(), Duration::from_secs(5)).expect_err("refused");
        assert!(matches!(err, CallError::Io(_)), "{err}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let err =
            call("GET", &url, &[], Vec::new(), Duration::from_millis(200)).expect_err("timeout");
        assert!(matches!(err, CallError::Timeout(_)), "{err}");
        drop(listener);
    }
}
