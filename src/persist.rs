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
/// old or the new content, never a mix. With `durable`, the data and the rename are
/// synced to disk first.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable {
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
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

/// Makes sure `dir` exists and is writable; the error says what is wrong in plain words.
pub fn prepare_data_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "data directory {} exists but is not a directory; pass --data-dir with a directory path",
            dir.display()
        ));
    }
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".telekad-write-test.{}", std::process::id()));
    fs::write(&probe, b"ok")
        .map_err(|e| format!("data directory {} is not writable: {e}", dir.display()))?;
    let _ = fs::remove_file(&probe);
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
}
