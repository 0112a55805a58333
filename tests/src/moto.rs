//! The moto server that emulates DynamoDB and KMS over real HTTP. One per process, started on first
//! use from the project's venv (made by `scripts/bootstrap.sh`), or taken from `CREDVAULT_TEST_MOTO_URL`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

static ENDPOINT: OnceLock<String> = OnceLock::new();
/// Kept for the life of the process: its stdin pipe is what keeps moto running.
static CHILD: Mutex<Option<Child>> = Mutex::new(None);

pub fn endpoint() -> String {
    ENDPOINT
        .get_or_init(|| {
            if let Ok(url) = std::env::var("CREDVAULT_TEST_MOTO_URL")
                && !url.is_empty()
            {
                return url;
            }
            start(0)
        })
        .clone()
}

/// Starts a moto server on `port` (0: any free port) and returns its URL.
pub fn start(port: u16) -> String {
    let root = crate::workspace_root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `make bootstrap` (or `make test`) first",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(root.join("tests/scripts/moto_launcher.py"))
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto launcher starts");
    let stdout = child.stdout.take().expect("moto stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("moto prints its URL");
    let url = line.trim().to_string();
    assert!(url.starts_with("http://"), "moto did not start: {url:?}");
    *CHILD.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    url
}
