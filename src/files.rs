//! Files on disk as content: streamed SHA-256 ids, a file-backed [`BlockSource`], and
//! directory scans for sharing.

use crate::engine::BlockSource;
use crate::id::NodeId;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Suffix of files being downloaded (and, with `.progress` after it, of their progress
/// records); scans skip both.
pub const PARTIAL_SUFFIX: &str = ".telekad-partial";

/// SHA-256 of a file, read in 1 MiB chunks; `progress(done, total)` after each chunk.
pub fn hash_file(path: &Path, mut progress: impl FnMut(u64, u64)) -> io::Result<(NodeId, u64)> {
    let mut f = File::open(path)?;
    let total = f.metadata()?.len();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        done += n as u64;
        progress(done, total);
    }
    Ok((NodeId(h.finalize().into()), done))
}

/// A shared file, read block by block on request.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// Opens `path` for serving; `len` is its size when it was hashed.
    pub fn open(path: &Path) -> io::Result<FileSource> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

impl BlockSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    #[cfg(unix)]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) | Err(_) => break,
                Ok(n) => done += n,
            }
        }
        done
    }

    #[cfg(not(unix))]
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> usize {
        use std::io::{Seek, SeekFrom};
        let mut f = match self.file.try_clone() {
            Ok(f) => f,
            Err(_) => return 0,
        };
        if f.seek(SeekFrom::Start(offset)).is_err() {
            return 0;
        }
        f.read(buf).unwrap_or(0)
    }
}

/// Every regular file under `paths` (files as given, directories recursively), skipping
/// hidden entries and partial downloads, sorted.
pub fn scan(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.contains(PARTIAL_SUFFIX) {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(&entry.path(), out)?;
        } else if ty.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_serve_a_file() {
        let dir = std::env::temp_dir().join(format!("telekad-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let path = dir.join("sub").join("big.bin");
        std::fs::write(&path, &data).unwrap();
        std::fs::write(dir.join(".hidden"), b"x").unwrap();
        std::fs::write(dir.join(format!("x{PARTIAL_SUFFIX}")), b"x").unwrap();
        let (id, len) = hash_file(&path, |_, _| {}).unwrap();
        assert_eq!(id, NodeId::hash(&data));
        assert_eq!(len, data.len() as u64);
        let src = FileSource::open(&path).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(src.read_at(8192, &mut buf), 4096);
        assert_eq!(&buf[..], &data[8192..8192 + 4096]);
        assert_eq!(src.read_at(data.len() as u64 - 10, &mut buf), 10);
        assert_eq!(scan(std::slice::from_ref(&dir)).unwrap(), vec![path]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
