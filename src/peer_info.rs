//! What telekad remembers about one remote address it talks with: the cookie it asked us to
//! return, whether it echoes ours, and whether it is a telekad node.
//! A routing-table contact keeps it inline ([`crate::table::Contact`]); any other address
//! keeps it in the engine's bounded peer book.

use crate::wire::Echo;

/// Bytes of cookie kept inline in a book entry: the reference node's cookies are 8
/// characters, kept as they are; telekad's are 16 lowercase hex digits, kept as 8 bytes.
const INLINE_COOKIE: usize = 8;
/// Longest cookie text an entry gives back inline.
const INLINE_TEXT: usize = 2 * INLINE_COOKIE;
/// `cookie_len` of an entry whose cookie is 16 lowercase hex digits, kept as 8 bytes.
const HEX_COOKIE: u8 = INLINE_TEXT as u8;
/// `cookie_len` of an entry with no cookie.
pub(crate) const NO_COOKIE: u8 = u8::MAX;
/// `cookie_len` of an entry whose cookie body is kept verbatim in the book's side map.
pub(crate) const RAW_COOKIE: u8 = u8::MAX - 1;
const ECHOES_OURS: u8 = 1;
const TELEKAD: u8 = 2;

/// What is kept per address, packed to 10 bytes with byte alignment: the cookie the
/// peer asked us to return (`PleaseAlwaysReturnThisMessage`; the text of a plain
/// `{"cookie":"..."}` inline if it is up to 8 plain characters or 16 lowercase hex digits,
/// any other body in the peer book's side map) and two flags. (When it was last heard is
/// kept beside it in the peer book, which forgets the stalest first; a contact has its own
/// times.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerInfo {
    pub(crate) cookie_len: u8,
    cookie: [u8; INLINE_COOKIE],
    flags: u8,
}

impl Default for PeerInfo {
    fn default() -> PeerInfo {
        PeerInfo {
            cookie_len: NO_COOKIE,
            cookie: [0; INLINE_COOKIE],
            flags: 0,
        }
    }
}

impl PeerInfo {
    /// Whether it handed us a cookie to return.
    pub fn has_their_cookie(&self) -> bool {
        self.cookie_len != NO_COOKIE
    }

    /// Whether its last packet carried our current cookie.
    pub fn echoes_ours(&self) -> bool {
        self.flags & ECHOES_OURS != 0
    }

    /// Sets [`PeerInfo::echoes_ours`].
    pub fn set_echoes_ours(&mut self, yes: bool) {
        self.flags = if yes {
            self.flags | ECHOES_OURS
        } else {
            self.flags & !ECHOES_OURS
        };
    }

    /// Whether it showed telekad extensions (so it needs no `PleaseSendPeers` beside a
    /// `WhereAreThey`).
    pub fn telekad(&self) -> bool {
        self.flags & TELEKAD != 0
    }

    /// Marks it as a telekad node.
    pub fn set_telekad(&mut self) {
        self.flags |= TELEKAD;
    }

    /// The inline cookie text, if the cookie is kept inline.
    pub(crate) fn inline_cookie(&self) -> Option<InlineText> {
        let mut text = InlineText([0; INLINE_TEXT], 0);
        match self.cookie_len {
            HEX_COOKIE => {
                crate::id::hex_into(&self.cookie, &mut text.0);
                text.1 = INLINE_TEXT;
            }
            len if usize::from(len) <= INLINE_COOKIE => {
                let len = usize::from(len);
                text.0[..len].copy_from_slice(&self.cookie[..len]);
                text.1 = len;
            }
            _ => return None,
        }
        Some(text)
    }

    /// Keeps `text` (as [`inline_text`] accepted it) inline.
    pub(crate) fn set_inline_cookie(&mut self, text: &str) {
        self.cookie = [0; INLINE_COOKIE];
        // `inline_text` lets through only lowercase hex digits at this length.
        if text.len() == INLINE_TEXT && crate::id::unhex_into(text.as_bytes(), &mut self.cookie) {
            self.cookie_len = HEX_COOKIE;
        } else if let Some(inline) = self.cookie.get_mut(..text.len()) {
            inline.copy_from_slice(text.as_bytes());
            self.cookie_len = text.len() as u8;
        } else {
            // Not reachable through `inline_text`; nothing is kept rather than a part.
            self.cookie_len = NO_COOKIE;
        }
    }
}

/// A cookie text rebuilt from an entry: bytes and length.
pub(crate) struct InlineText([u8; INLINE_TEXT], usize);

impl InlineText {
    pub(crate) fn as_str(&self) -> &str {
        // Only plain ASCII is ever kept inline (see `inline_text`).
        std::str::from_utf8(&self.0[..self.1]).unwrap_or_default()
    }
}

/// The text of a `{"cookie":"..."}` body if it can be kept inline, so that writing it back
/// gives the same bytes: at most 8 plain ASCII characters, or 16 lowercase hex digits.
pub(crate) fn inline_text(e: &Echo) -> Option<&str> {
    let inner = e
        .as_json()
        .strip_prefix("{\"cookie\":\"")
        .and_then(|r| r.strip_suffix("\"}"))?;
    let plain = inner
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    let hex = inner.len() == INLINE_TEXT
        && inner
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ((plain && inner.len() <= INLINE_COOKIE) || hex).then_some(inner)
}
