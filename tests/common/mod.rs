//! Helpers shared by the integration tests (each test crate includes this with `mod common;`
//! and uses what it needs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A unique path under the system temp dir, removed on drop (also when a test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    /// A path that does not exist yet, named after the test crate and `name`.
    pub fn path_only(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p = std::env::temp_dir().join(format!(
            "telekad-{}-{name}-{}-{nanos}",
            env!("CARGO_CRATE_NAME"),
            std::process::id()
        ));
        assert!(!p.exists(), "{} already exists", p.display());
        TempDir(p)
    }

    /// An empty directory.
    pub fn new(name: &str) -> TempDir {
        let d = TempDir::path_only(name);
        std::fs::create_dir_all(&d.0).expect("create temp dir");
        d
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path as a command-line argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// The `telekad` binary with a predictable environment (default log filter, no colours), no
/// standard input, and its output captured.
pub fn telekad(args: &[&str]) -> std::process::Command {
    use std::process::{Command, Stdio};
    let mut c = Command::new(env!("CARGO_BIN_EXE_telekad"));
    c.args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Reads `from` line by line on a thread: each line is sent on the returned channel as it
/// arrives, and the thread returns the whole text once `from` closes (a child's stderr).
pub fn forward_lines(
    from: impl std::io::Read + Send + 'static,
) -> (
    std::sync::mpsc::Receiver<String>,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    (rx, reader)
}
