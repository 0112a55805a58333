//! Reading a provider's answer with a size cap: a provider (or whoever answers in its name) must not
//! make the vault buffer an unbounded body. A `Content-Length` above the cap is refused before the
//! body is read; without one, reading stops at the first chunk that passes the cap.
//!
//! The bytes may hold tokens, so they come back in a buffer that is zeroed on drop, and no error says
//! anything about what the body contained.

use std::fmt;

use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

/// The most the vault reads of any provider answer (token, discovery, JWKS, user endpoint, revocation).
pub const MAX_PROVIDER_RESPONSE_BYTES: usize = 1024 * 1024;

/// Where a body is read into when the answer says nothing of its size.
const INITIAL_CAPACITY: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the limit (by its `Content-Length`, or by what arrived); the rest was not read.
    TooLarge { limit: usize },
    /// The client's timeout passed while reading.
    Timeout,
    /// The connection failed or closed before the body was complete.
    Interrupted,
    /// Complete, but not the JSON that was expected.
    NotJson,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "answer larger than {limit} bytes"),
            BodyError::Timeout => f.write_str("timeout reading the answer"),
            BodyError::Interrupted => f.write_str("answer interrupted"),
            BodyError::NotJson => f.write_str("answer is not the expected JSON"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The whole body, if it is at most `limit` bytes. Dropping the response on refusal closes the
/// connection, so the provider cannot keep sending.
pub async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let declared = declared_length(&resp);
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let capacity = declared.map_or(INITIAL_CAPACITY, |length| length as usize).min(limit);
    let mut body = Zeroizing::new(Vec::with_capacity(capacity));
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        if e.is_timeout() {
            BodyError::Timeout
        } else {
            BodyError::Interrupted
        }
    })? {
        append(&mut body, &chunk, limit)?;
    }
    Ok(body)
}

/// The body parsed as JSON, if it is at most `limit` bytes.
pub async fn json_capped<T: DeserializeOwned>(resp: reqwest::Response, limit: usize) -> Result<T, BodyError> {
    let body = read_capped(resp, limit).await?;
    serde_json::from_slice(&body).map_err(|_| BodyError::NotJson)
}

/// The `Content-Length` the answer declares. A header that is present but unreadable counts as too
/// large: a sender that cannot state its length honestly gets no benefit of the doubt.
fn declared_length(resp: &reqwest::Response) -> Option<u64> {
    match resp.headers().get(reqwest::header::CONTENT_LENGTH) {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(u64::MAX),
        ),
        None => resp.content_length(),
    }
}

/// Appends `chunk` without ever leaving a copy behind: when the buffer must grow, the bytes move to
/// a new zeroizing buffer and the old one is wiped as it drops (a plain `Vec` reallocation would
/// free the old bytes as they are).
fn append(body: &mut Zeroizing<Vec<u8>>, chunk: &[u8], limit: usize) -> Result<(), BodyError> {
    let needed = body.len() + chunk.len();
    if needed > limit {
        return Err(BodyError::TooLarge { limit });
    }
    if needed > body.capacity() {
        let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(body.capacity() * 2).min(limit)));
        grown.extend_from_slice(body);
        *body = grown;
    }
    body.extend_from_slice(chunk);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn appending_refuses_past_the_limit_and_grows_within_it() {
        let mut body = Zeroizing::new(Vec::with_capacity(2));
        append(&mut body, b"abc", 8).unwrap();
        append(&mut body, b"defgh", 8).unwrap();
        assert_eq!(body.as_slice(), b"abcdefgh");
        assert!(body.capacity() <= 8, "never grown past the limit");
        assert_eq!(append(&mut body, b"i", 8), Err(BodyError::TooLarge { limit: 8 }));
    }

    #[test]
    fn errors_say_nothing_of_the_body() {
        for e in [
            BodyError::TooLarge { limit: 10 },
            BodyError::Timeout,
            BodyError::Interrupted,
            BodyError::NotJson,
        ] {
            assert!(!e.to_string().contains('{'), "{e}");
        }
    }

    /// A one-connection HTTP server that answers `head`, then writes `body_bytes` of `x` in 16 KiB
    /// pieces until the client hangs up; counts the body bytes it managed to write.
    async fn serve_once(head: &'static str, body_bytes: usize, hold_open: bool) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let written = Arc::new(AtomicUsize::new(0));
        let counter = written.clone();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let piece = vec![b'x'; 16 * 1024];
            let mut left = body_bytes;
            while left > 0 {
                let n = left.min(piece.len());
                if socket.write_all(&piece[..n]).await.is_err() {
                    return;
                }
                counter.fetch_add(n, Ordering::SeqCst);
                left -= n;
            }
            if hold_open {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        (url, written)
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::Client::new().get(url).send().await.unwrap()
    }

    #[tokio::test]
    async fn a_declared_length_above_the_limit_is_refused_before_any_body_arrives() {
        // The body never comes: reading it would hang, so only the header can have refused it.
        let (url, _) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 5000000\r\n\r\n", 0, true).await;
        let refused = tokio::time::timeout(Duration::from_secs(5), read_capped(get(&url).await, 1024)).await;
        assert_eq!(
            refused.expect("no waiting for the body"),
            Err(BodyError::TooLarge { limit: 1024 })
        );
    }

    #[tokio::test]
    async fn an_undeclared_body_is_read_only_up_to_the_limit() {
        let total = 16 * 1024 * 1024;
        let (url, written) = serve_once("HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", total, false).await;
        let limit = 64 * 1024;
        assert_eq!(
            read_capped(get(&url).await, limit).await,
            Err(BodyError::TooLarge { limit })
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent = written.load(Ordering::SeqCst);
        assert!(sent < total / 2, "the server was cut off after {sent} of {total} bytes");
    }

    #[tokio::test]
    async fn a_lying_short_length_yields_only_what_it_declared() {
        let (url, _) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n", 100_000, false).await;
        let body = read_capped(get(&url).await, 1024).await.unwrap();
        assert_eq!(body.as_slice(), b"xxxx");
    }

    #[tokio::test]
    async fn json_within_the_limit_parses_and_other_bodies_do_not() {
        let (url, _) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n{\"a\":1}", 0, false).await;
        let value: serde_json::Value = json_capped(get(&url).await, 1024).await.unwrap();
        assert_eq!(value["a"], 1);
        let (url, _) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n", 4, false).await;
        assert_eq!(
            json_capped::<serde_json::Value>(get(&url).await, 1024)
                .await
                .unwrap_err(),
            BodyError::NotJson
        );
    }
}
