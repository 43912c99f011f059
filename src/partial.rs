//! A download on disk: bytes go to `<file>.telekad-partial`, which blocks are present goes
//! to `<file>.telekad-partial.progress` (written atomically), and the verified content is
//! renamed to `<file>`. A later run of the same id resumes from the progress record.

use crate::download::ResumeFrom;
use crate::engine::BlockSink;
use crate::files::PARTIAL_SUFFIX;
use crate::id::NodeId;
use crate::persist::write_atomic;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Version of the progress record.
const PROGRESS_VERSION: u32 = 1;
/// Largest progress record read back (a bitmap of 2^35 blocks is far beyond any file).
const MAX_PROGRESS_BYTES: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Progress {
    version: u32,
    id: String,
    len: u64,
    /// One bit per block, least significant bit first, base64.
    have: String,
}

/// A partial download file ([`BlockSink`]).
#[derive(Debug)]
pub struct PartialFile {
    id: NodeId,
    target: PathBuf,
    partial: PathBuf,
    progress: PathBuf,
    file: File,
}

/// The partial-file path of a download to `target`.
pub fn partial_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(PARTIAL_SUFFIX);
    PathBuf::from(s)
}

/// The progress-record path of a download to `target`.
pub fn progress_path(target: &Path) -> PathBuf {
    let mut s = partial_path(target).into_os_string();
    s.push(".progress");
    PathBuf::from(s)
}

impl PartialFile {
    /// Opens (or creates) the partial file of a download of `id` to `target`. Returns the
    /// sink and, if an earlier run of the same id left a progress record, the length and
    /// blocks present. A record of another id, or an unreadable one, is ignored (the
    /// download starts over).
    pub fn open(target: &Path, id: NodeId) -> io::Result<(PartialFile, Option<ResumeFrom>)> {
        let partial = partial_path(target);
        let progress = progress_path(target);
        // Temp files of progress records whose writer was killed mid-write.
        crate::persist::remove_stale_temps(&progress);
        let mut resume = read_progress(&progress, id);
        if let Some((len, have)) = &resume {
            // Every block the record claims must lie inside the partial file.
            let size = std::fs::metadata(&partial).map_or(0, |m| m.len());
            let bs = crate::wire::BLOCK_SIZE as u64;
            let needed = have
                .iter()
                .rposition(|h| *h)
                .map_or(0, |b| ((b as u64 + 1) * bs).min(*len));
            if size < needed {
                resume = None;
            }
        }
        if resume.is_none() {
            // A record of another id (or a damaged one) must not describe the new bytes.
            let _ = std::fs::remove_file(&progress);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(resume.is_none())
            .open(&partial)?;
        Ok((
            PartialFile {
                id,
                target: target.to_owned(),
                partial,
                progress,
                file,
            },
            resume,
        ))
    }
}

fn read_progress(path: &Path, id: NodeId) -> Option<ResumeFrom> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_PROGRESS_BYTES {
        return None;
    }
    let p: Progress = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    if p.version != PROGRESS_VERSION || p.id != id.to_hex() {
        return None;
    }
    let bits = base64_simd::STANDARD
        .decode_to_vec(p.have.as_bytes())
        .ok()?;
    let blocks = p.len.div_ceil(crate::wire::BLOCK_SIZE as u64).max(1);
    if bits.len() as u64 != blocks.div_ceil(8) {
        return None;
    }
    let have = (0..blocks as usize)
        .map(|b| bits[b / 8] & (1 << (b % 8)) != 0)
        .collect();
    Some((p.len, have))
}

impl BlockSink for PartialFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        write_all_at(&self.file, offset, data)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_exact_at(&self.file, offset, buf)
    }

    fn checkpoint(&mut self, len: u64, have: &[bool]) -> io::Result<()> {
        let mut bits = vec![0u8; have.len().div_ceil(8)];
        for (b, h) in have.iter().enumerate() {
            if *h {
                bits[b / 8] |= 1 << (b % 8);
            }
        }
        let p = Progress {
            version: PROGRESS_VERSION,
            id: self.id.to_hex(),
            len,
            have: base64_simd::STANDARD.encode_to_string(&bits),
        };
        let bytes = serde_json::to_vec(&p).map_err(io::Error::other)?;
        write_atomic(&self.progress, &bytes, false)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.partial, &self.target)?;
        let _ = std::fs::remove_file(&self.progress);
        Ok(())
    }

    fn discard(&mut self) {
        let _ = std::fs::remove_file(&self.progress);
        let _ = std::fs::remove_file(&self.partial);
    }
}

#[cfg(unix)]
fn write_all_at(f: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, data, offset)
}

#[cfg(unix)]
fn read_exact_at(f: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, offset)
}

#[cfg(not(unix))]
fn write_all_at(mut f: &File, offset: u64, data: &[u8]) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)
}

#[cfg(not(unix))]
fn read_exact_at(mut f: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_round_trips_and_finish_renames() {
        let dir = std::env::temp_dir().join(format!("telekad-partial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.bin");
        let id = NodeId::hash(b"content");
        let (mut p, resume) = PartialFile::open(&target, id).unwrap();
        assert!(resume.is_none());
        p.write_at(4096, &[7u8; 100]).unwrap();
        let have = vec![false, true];
        p.checkpoint(4196, &have).unwrap();
        drop(p);
        let (mut p, resume) = PartialFile::open(&target, id).unwrap();
        assert_eq!(resume, Some((4196, have)));
        let mut buf = [0u8; 100];
        p.read_at(4096, &mut buf).unwrap();
        assert_eq!(buf, [7u8; 100]);
        // Another id does not resume this one.
        let (_, other) = PartialFile::open(&dir.join("out.bin"), NodeId::hash(b"x")).unwrap();
        assert!(other.is_none());
        let (mut p, _) = PartialFile::open(&target, id).unwrap();
        p.write_at(0, &[1u8; 10]).unwrap();
        p.finish().unwrap();
        assert!(target.exists());
        assert!(!partial_path(&target).exists());
        assert!(!progress_path(&target).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
