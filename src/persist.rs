//! Node state on disk: one JSON file written atomically (temp file, fsync, rename), with a
//! format version and a SHA-256 checksum of its body.

use crate::engine::{SavedContact, SavedState};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the state file inside the data directory.
pub const STATE_FILE: &str = "state.json";
/// Version of the state file format this build writes and reads.
pub const STATE_VERSION: u32 = 1;
/// Largest state file read (a full table is far smaller).
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Body {
    public_addr: Option<SocketAddr>,
    contacts: Vec<ContactRecord>,
}

#[derive(Serialize, Deserialize)]
struct ContactRecord {
    addr: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rtt_us: Option<u64>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    version: u32,
    checksum: String,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Why a state file could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// It could not be read.
    Io(io::Error),
    /// It is not a valid state file (bad JSON, wrong checksum, bad fields).
    Corrupt(String),
    /// It was written by a newer telekad.
    FutureVersion(u32),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io(e) => write!(f, "cannot read state file: {e}"),
            LoadError::Corrupt(why) => write!(f, "state file is corrupt: {why}"),
            LoadError::FutureVersion(v) => write!(
                f,
                "state file has format version {v}, this telekad reads version {STATE_VERSION}"
            ),
        }
    }
}

impl std::error::Error for LoadError {}

fn checksum(body: &str) -> String {
    hex::encode(Sha256::digest(body.as_bytes()))
}

/// The state file's bytes for `state`.
pub fn encode(state: &SavedState) -> Vec<u8> {
    let body = Body {
        public_addr: state.public_addr,
        contacts: state
            .contacts
            .iter()
            .map(|c| ContactRecord {
                addr: c.addr,
                rtt_us: c
                    .rtt
                    .map(|d| d.as_micros().min(u128::from(u64::MAX)) as u64),
            })
            .collect(),
    };
    // Serialising plain data into a String cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
    format!(
        "{{\"version\":{STATE_VERSION},\"checksum\":\"{}\",\"body\":{body}}}\n",
        checksum(&body)
    )
    .into_bytes()
}

/// Parses a state file's bytes.
pub fn decode(bytes: &[u8]) -> Result<SavedState, LoadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| LoadError::Corrupt("not UTF-8".into()))?;
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let v: VersionOnly =
        serde_json::from_str(text).map_err(|e| LoadError::Corrupt(e.to_string()))?;
    if v.version > STATE_VERSION {
        return Err(LoadError::FutureVersion(v.version));
    }
    let env: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| LoadError::Corrupt(e.to_string()))?;
    if env.version != STATE_VERSION {
        return Err(LoadError::Corrupt(format!(
            "unknown version {}",
            env.version
        )));
    }
    if checksum(env.body.get()) != env.checksum {
        return Err(LoadError::Corrupt("checksum mismatch".into()));
    }
    let body: Body =
        serde_json::from_str(env.body.get()).map_err(|e| LoadError::Corrupt(e.to_string()))?;
    Ok(SavedState {
        public_addr: body.public_addr,
        contacts: body
            .contacts
            .into_iter()
            .map(|c| SavedContact {
                addr: c.addr,
                rtt: c.rtt_us.map(Duration::from_micros),
            })
            .collect(),
    })
}

/// Writes `state` to `dir/state.json` atomically: a crash leaves either the old or the new
/// file, never a torn one.
pub fn save(dir: &Path, state: &SavedState) -> io::Result<()> {
    write_atomic(&dir.join(STATE_FILE), &encode(state), true)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so that readers see the
/// old or the new content, never a mix. With `durable`, the data is synced to disk before
/// the rename and the directory after it, so that a power cut leaves the old or the new
/// file too.
///
/// The temporary file sits in the same directory (a rename never crosses file systems) and
/// is named `.<name>.tmp.<pid>.<n>`: two processes, or two writes in one process, never
/// share one. A write that fails removes it; one cut short by a kill leaves it behind, for
/// [`remove_stale_temps`] to clear at the next start.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = parent_dir(path);
    let tmp = dir.join(format!(
        "{}{}.{}",
        temp_prefix(path),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if durable {
        // Make the rename itself durable. Some file systems cannot sync a directory; the
        // data is already safe there, so that is not an error.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// What the temporary files of `path` start with (the pid and a counter follow).
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp.")
}

/// Removes the temporary files [`write_atomic`] left beside `path` when a process was killed
/// mid-write: those of processes that no longer run. Returns how many were removed.
pub fn remove_stale_temps(path: &Path) -> usize {
    remove_dead_pid_files(parent_dir(path), &temp_prefix(path))
}

/// Removes the files of `dir` named `<prefix><pid>` or `<prefix><pid>.<anything>` whose
/// process no longer runs.
fn remove_dead_pid_files(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('.').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !process_alive(pid) && fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Whether process `pid` runs (this one included). When unsure, yes: its file is kept.
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if p <= 0 {
        return true;
    }
    // Signal 0 only checks: ESRCH means there is no such process.
    // SAFETY: kill(2) with signal 0 sends nothing and touches no memory.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Reads `dir/state.json`: `Ok(None)` if there is none.
pub fn load(dir: &Path) -> Result<Option<SavedState>, LoadError> {
    let path = dir.join(STATE_FILE);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LoadError::Io(e)),
    };
    if meta.len() > MAX_STATE_BYTES {
        return Err(LoadError::Corrupt(format!(
            "{} bytes is too large",
            meta.len()
        )));
    }
    let bytes = fs::read(&path).map_err(LoadError::Io)?;
    decode(&bytes).map(Some)
}

/// Moves an unusable state file aside (`state.json.bad-<unix seconds>`) so that nothing is
/// lost and the node can start fresh. Returns the new path.
pub fn set_aside(dir: &Path) -> io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut to = dir.join(format!("{STATE_FILE}.bad-{secs}"));
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{STATE_FILE}.bad-{secs}-{n}"));
        n += 1;
    }
    fs::rename(dir.join(STATE_FILE), &to)?;
    Ok(to)
}

/// The write test of [`prepare_data_dir`]: this, then the pid.
const PROBE_PREFIX: &str = ".telekad-write-test.";

/// Makes sure `dir` exists and is writable (the error says what is wrong in plain words),
/// and clears the temporary files that a crash left (of a save or of this write test).
pub fn prepare_data_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "data directory {} exists but is not a directory; pass --data-dir with a directory path",
            dir.display()
        ));
    }
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let probe = dir.join(format!("{PROBE_PREFIX}{}", std::process::id()));
    fs::write(&probe, b"ok")
        .map_err(|e| format!("data directory {} is not writable: {e}", dir.display()))?;
    let _ = fs::remove_file(&probe);
    let stale =
        remove_stale_temps(&dir.join(STATE_FILE)) + remove_dead_pid_files(dir, PROBE_PREFIX);
    if stale > 0 {
        tracing::debug!(stale, "removed temporary files of an interrupted run");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SavedState {
        SavedState {
            public_addr: Some("192.0.2.1:24254".parse().unwrap()),
            contacts: vec![
                SavedContact {
                    addr: "127.0.0.2:5".parse().unwrap(),
                    rtt: Some(Duration::from_micros(1500)),
                },
                SavedContact {
                    addr: "[::1]:7".parse().unwrap(),
                    rtt: None,
                },
            ],
        }
    }

    #[test]
    fn roundtrip_and_detects_damage() {
        let bytes = encode(&sample());
        assert_eq!(decode(&bytes).unwrap(), sample());
        // Flip one byte inside the body: the checksum catches it.
        let mut bad = bytes.clone();
        let at = bad.len() - 10;
        bad[at] ^= 1;
        assert!(matches!(decode(&bad), Err(LoadError::Corrupt(_))));
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2]),
            Err(LoadError::Corrupt(_))
        ));
        let future = String::from_utf8(bytes)
            .unwrap()
            .replace("\"version\":1", "\"version\":9");
        assert!(matches!(
            decode(future.as_bytes()),
            Err(LoadError::FutureVersion(9))
        ));
    }

    #[test]
    fn write_atomic_leaves_no_temp_and_stale_temps_are_cleared() {
        let dir = std::env::temp_dir().join(format!(
            "telekad-persist-unit-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(STATE_FILE);
        save(&dir, &sample()).unwrap();
        save(&dir, &sample()).unwrap();
        assert_eq!(load(&dir).unwrap(), Some(sample()));
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&dir), vec![STATE_FILE.to_string()]);

        // A temp of a process that is gone (pid far above any pid_max) and one of this
        // process: only the first is stale.
        let dead = dir.join(format!("{}{}.0", temp_prefix(&path), i32::MAX as u32 - 1));
        let ours = dir.join(format!("{}{}.0", temp_prefix(&path), std::process::id()));
        let other = dir.join("unrelated.tmp.1.0");
        for p in [&dead, &ours, &other] {
            fs::write(p, b"{\"version\":1,").unwrap();
        }
        assert_eq!(remove_stale_temps(&path), 1);
        assert!(!dead.exists() && ours.exists() && other.exists());
        // A failed write removes its temp file (the target is a directory: the rename fails).
        let sub = dir.join("sub");
        fs::create_dir_all(sub.join("x")).unwrap();
        assert!(write_atomic(&sub.join("x"), b"data", true).is_err());
        assert_eq!(names(&sub), vec!["x".to_string()]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
