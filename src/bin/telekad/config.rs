//! `--config FILE`: the TOML config file of a long-running node (`run`, `share`, `announce`).
//!
//! Every setting a flag of `telekad run` can set has a key of the same name, with
//! underscores for the flag's dashes (`--rate-per-ip` is `rate_per_ip`). A flag given on the
//! command line wins over the file, and the file over the built-in default. The file is read
//! and checked completely before the node opens its data directory, so a bad file changes
//! nothing on disk. `docs/telekad.toml` lists every key with its default.

use crate::args::{bind_addr, peer_addr};
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::{Spanned, Value};

/// Every key, what it takes (for error messages), in the order of `docs/telekad.toml`.
pub const KEYS: &[(&str, &str)] = &[
    ("bind", "a string IP:PORT such as \"0.0.0.0:24254\""),
    ("data_dir", "a string, a directory path"),
    (
        "bootstrap",
        "an array of strings IP:PORT such as [\"192.0.2.1:24254\"]",
    ),
    ("public", "true or false"),
    ("rate_per_ip", "a whole number, 0 (unlimited) or more"),
    ("rate_global", "a whole number, 0 (unlimited) or more"),
    (
        "rate_blocks_per_ip",
        "a whole number, 0 (unlimited) or more",
    ),
    ("http", "a string IP:PORT such as \"127.0.0.1:24255\""),
    ("http_public", "true or false"),
    ("share", "an array of strings, directory or file paths"),
    ("rescan", "a whole number of seconds, 1 to 86400"),
    (
        "save_every",
        "a whole number of milliseconds, 1 to 86400000",
    ),
];

/// The file as TOML types; serde rejects unknown keys (checked first, with a better message,
/// by [`load`]) and wrong types.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    bind: Option<String>,
    data_dir: Option<String>,
    bootstrap: Option<Vec<String>>,
    public: Option<bool>,
    rate_per_ip: Option<u32>,
    rate_global: Option<u32>,
    rate_blocks_per_ip: Option<u32>,
    http: Option<String>,
    http_public: Option<bool>,
    share: Option<Vec<String>>,
    rescan: Option<u64>,
    save_every: Option<u64>,
}

/// A checked config file: each setting it gives, parsed as its flag would be.
#[derive(Debug, Default, Clone)]
pub struct FileConfig {
    pub bind: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub bootstrap: Option<Vec<SocketAddr>>,
    pub public: Option<bool>,
    pub rate_per_ip: Option<u32>,
    pub rate_global: Option<u32>,
    pub rate_blocks_per_ip: Option<u32>,
    pub http: Option<SocketAddr>,
    pub http_public: Option<bool>,
    pub share: Option<Vec<PathBuf>>,
    pub rescan: Option<u64>,
    pub save_every: Option<u64>,
}

/// The arguments given on the command line (not defaulted), by clap id (the field name).
#[derive(Debug, Default, Clone)]
pub struct Given(BTreeSet<String>);

impl Given {
    /// The ids of `m` whose value came from the command line.
    pub fn of(m: &ArgMatches) -> Given {
        Given(
            m.ids()
                .map(|id| id.as_str())
                .filter(|id| m.value_source(id) == Some(ValueSource::CommandLine))
                .map(str::to_string)
                .collect(),
        )
    }

    /// Whether the flag with clap id `id` (e.g. `rate_per_ip`) was on the command line.
    pub fn has(&self, id: &str) -> bool {
        self.0.contains(id)
    }
}

/// Sets `*slot` from the file unless the flag `id` was given on the command line.
pub fn merge<T: Clone>(slot: &mut T, file: &Option<T>, id: &str, given: &Given) {
    if let Some(v) = file {
        if !given.has(id) {
            *slot = v.clone();
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn valid_keys() -> String {
    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}

fn kind(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _)| *k == key)
        .map_or("a valid value", |(_, what)| what)
}

/// Reads and checks the config file at `path`. Every error names the file, the place and the
/// problem, and says what to do; nothing is opened or written but the file read.
pub fn load(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read config file {}: {e}; check the path given to --config",
            path.display()
        )
    })?;
    parse(path, &text)
}

/// Checks the text of the config file `path`.
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, String> {
    let file = path.display();
    // 1. TOML syntax, with every top-level key and where its value is.
    let table: BTreeMap<String, Spanned<Value>> = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(String::new(), |s| {
            let (l, c) = line_col(text, s.start);
            format!(" at line {l}, column {c}")
        });
        format!(
            "config file {file} is not valid TOML{at}: {}; fix the syntax (one `key = value` \
             per line, strings in double quotes)",
            one_line(e.message())
        )
    })?;
    let line_of = |key: &str| {
        table
            .get(key)
            .map_or(0, |v| line_col(text, v.span().start).0)
    };
    // 2. Unknown keys, named, with the valid ones.
    for key in table.keys() {
        if !KEYS.iter().any(|(k, _)| k == key) {
            let alt = key.replace('-', "_");
            let hint = if KEYS.iter().any(|(k, _)| *k == alt) {
                format!(" (keys use underscores: write `{alt}`)")
            } else {
                String::new()
            };
            return Err(format!(
                "config file {file}, line {}: unknown key `{key}`{hint}; remove it or use one \
                 of: {}",
                line_of(key),
                valid_keys()
            ));
        }
    }
    // 3. Types.
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        let (l, c) = line_col(text, start);
        let key = table
            .iter()
            .find(|(_, v)| v.span().contains(&start))
            .map(|(k, _)| k.as_str());
        match key {
            Some(k) => format!(
                "config file {file}, line {l}, column {c}: {k}: {}; give {}",
                one_line(e.message()),
                kind(k)
            ),
            None => format!(
                "config file {file}, line {l}, column {c}: {}",
                one_line(e.message())
            ),
        }
    })?;
    // 4. Values, with the flags' own parsers and ranges.
    let bad =
        |key: &str, msg: String| format!("config file {file}, line {}: {key}: {msg}", line_of(key));
    let addr = |key: &str, v: &Option<String>| -> Result<Option<SocketAddr>, String> {
        v.as_deref()
            .map(|s| bind_addr(s).map_err(|m| bad(key, m)))
            .transpose()
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let range = |key: &str, v: Option<u64>, hi: u64, unit: &str| -> Result<Option<u64>, String> {
        match v {
            Some(n) if !(1..=hi).contains(&n) => Err(bad(
                key,
                format!("{n} is out of range; give 1 to {hi} {unit}"),
            )),
            _ => Ok(v),
        }
    };
    let cfg = FileConfig {
        bind: addr("bind", &raw.bind)?,
        data_dir: raw.data_dir.as_deref().map(|p| resolve(base, p)),
        bootstrap: raw
            .bootstrap
            .map(|list| {
                list.iter()
                    .map(|s| peer_addr(s).map_err(|m| bad("bootstrap", m)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
        public: raw.public,
        rate_per_ip: raw.rate_per_ip,
        rate_global: raw.rate_global,
        rate_blocks_per_ip: raw.rate_blocks_per_ip,
        http: addr("http", &raw.http)?,
        http_public: raw.http_public,
        share: raw
            .share
            .map(|list| list.iter().map(|p| resolve(base, p)).collect()),
        rescan: range("rescan", raw.rescan, 86_400, "seconds")?,
        save_every: range("save_every", raw.save_every, 86_400_000, "milliseconds")?,
    };
    if let Some(p) = cfg.data_dir.as_ref().filter(|p| p.as_os_str().is_empty()) {
        return Err(bad(
            "data_dir",
            format!("'{}' is empty; give a directory path", p.display()),
        ));
    }
    Ok(cfg)
}

/// A path from the file: `~/` is the home directory, a relative path is relative to the
/// directory of the config file.
fn resolve(base: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            return PathBuf::from(home).join(rest);
        }
    }
    let p = Path::new(p);
    if p.is_absolute() || p.as_os_str().is_empty() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// `msg` on one line (toml's messages may span several).
fn one_line(msg: &str) -> String {
    msg.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<FileConfig, String> {
        parse(Path::new("/etc/t.toml"), text)
    }

    #[test]
    fn parses_every_key() {
        let c = p(r#"
bind = "127.0.0.1:1"
data_dir = "d"
bootstrap = ["127.0.0.2:3"]
public = false
rate_per_ip = 7
rate_global = 0
http = "127.0.0.1:2"
http_public = false
share = ["/s"]
rescan = 5
save_every = 100
"#)
        .unwrap();
        assert_eq!(c.bind, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(c.data_dir, Some(PathBuf::from("/etc/d")));
        assert_eq!(c.rate_per_ip, Some(7));
        assert_eq!(c.share, Some(vec![PathBuf::from("/s")]));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = p("bind = \n").unwrap_err();
        assert!(e.contains("not valid TOML at line 1"), "{e}");
        let e = p("rate-per-ip = 3\n").unwrap_err();
        assert!(
            e.contains("`rate-per-ip`") && e.contains("write `rate_per_ip`"),
            "{e}"
        );
        let e = p("\nrate_per_ip = \"x\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("rate_per_ip"), "{e}");
        let e = p("bind = \"nonsense\"\n").unwrap_err();
        assert!(e.contains("'nonsense' is not a bind address"), "{e}");
        let e = p("rescan = 0\n").unwrap_err();
        assert!(e.contains("rescan") && e.contains("1 to 86400"), "{e}");
    }
}
