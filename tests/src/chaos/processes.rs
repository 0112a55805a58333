//! The chaos suite's moving parts outside the driver: vault processes (the `vault-process` binary),
//! the round-robin front before them, and finding which process owns a socket (to kill the one that
//! is mid-refresh).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncBufReadExt, BufReader};

/// One running vault process.
pub struct VaultProcess {
    pub port: u16,
    child: tokio::process::Child,
}

impl VaultProcess {
    /// Starts `bin` with `env` on `port` (0: a free one) and waits for its `listening` line.
    pub async fn start(bin: &PathBuf, env: &BTreeMap<String, String>, port: u16) -> Result<Self, String> {
        let mut child = tokio::process::Command::new(bin)
            .envs(env)
            .env("CHAOS_VAULT_PORT", port.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            // Their logs only when asked for (`CHAOS_VAULT_LOG=warn`): a test's output stays readable.
            .stderr(if std::env::var_os("CHAOS_VAULT_LOG").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut line)).await;
        // Its standard output is its log, where its reads' audit lines go (as Lambda ships a function's
        // output): read on to the end, or its writes would fail and its reads be refused unaudited.
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy_buf(&mut stdout, &mut sink).await;
        });
        let url = match read {
            Ok(Ok(n)) if n > 0 => line.trim().strip_prefix("listening ").unwrap_or_default().to_string(),
            _ => return Err(format!("vault process on port {port} did not start")),
        };
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("vault process printed {line:?}"))?;
        Ok(Self { port, child })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL, and wait until it is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Which of `pids` owns the local TCP socket bound to `port` on loopback (Linux `/proc`).
pub fn pid_owning_local_port(port: u16, pids: &[u32]) -> Option<u32> {
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let wanted = format!("0100007F:{port:04X}");
    let inode = tcp.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Skip sockets that no process holds any more (TIME_WAIT and the like: inode 0).
        let inode = cols.get(9).filter(|inode| **inode != "0")?;
        (cols.get(1) == Some(&wanted.as_str())).then(|| inode.to_string())
    })?;
    let link = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy() == link))
        })
    })
}

/// The local ports of `pid`'s IPv4 TCP sockets (Linux `/proc`).
pub fn local_ports_of(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|t| {
                    t.to_string_lossy()
                        .strip_prefix("socket:[")
                        .and_then(|s| s.strip_suffix(']'))
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    tcp.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode = cols.get(9)?;
            if !inodes.iter().any(|i| i == inode) {
                return None;
            }
            let port = cols.get(1)?.rsplit(':').next()?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

/// The round-robin front: what API Gateway is to several warm Lambda instances. A request whose
/// connection cannot be made (a killed process) goes to the next one; a request lost inside a
/// process that died answers 502, as API Gateway answers for a Lambda that crashed.
#[derive(Clone)]
pub struct Front {
    pub url: String,
    backends: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl Front {
    pub async fn bind() -> (tokio::net::TcpListener, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind front");
        let url = format!("http://{}", listener.local_addr().expect("front addr"));
        (listener, url)
    }

    pub fn serve(listener: tokio::net::TcpListener, url: String, backends: Vec<String>) -> Self {
        let front = Front {
            url,
            backends: Arc::new(backends),
            next: Arc::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .expect("front client"),
        };
        let app = Router::new().fallback(forward).with_state(front.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        front
    }
}

async fn forward(State(front): State<Front>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
    let count = front.backends.len().max(1);
    for _ in 0..count * 2 {
        let n = front.next.fetch_add(1, Ordering::Relaxed);
        let Some(backend) = front.backends.get(n % count) else {
            break;
        };
        let mut req = front
            .http
            .request(method.clone(), format!("{backend}{path}"))
            .body(body.clone());
        for (name, value) in &headers {
            if name != "host" && name != "content-length" {
                req = req.header(name, value);
            }
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                let Ok(bytes) = resp.bytes().await else {
                    return lost_in_backend();
                };
                let mut out = (status, bytes).into_response();
                for (name, value) in &headers {
                    if name != "content-length" && name != "transfer-encoding" {
                        out.headers_mut().append(name, value.clone());
                    }
                }
                return out;
            }
            // Never reached the process (it is down): the next one takes it.
            Err(e) if e.is_connect() => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return lost_in_backend(),
        }
    }
    lost_in_backend()
}

fn lost_in_backend() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [("content-type", "application/json")],
        r#"{"errorCode":"front_lost_backend"}"#,
    )
        .into_response()
}
