//! Tolerant decoding: a bad element is skipped and counted, the rest of the array still counts.

use super::{Echo, Message, IGNORED_MESSAGES, MAX_DATAGRAM, MAX_MESSAGES};
use crate::addr::parse_peer;
use crate::id::NodeId;
use base64::Engine as _;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

/// Why a whole datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    /// Larger than [`MAX_DATAGRAM`].
    TooLarge,
    /// Not UTF-8, not JSON, or JSON that is not an array.
    NotJsonArray,
}

/// The messages of one datagram and what was skipped on the way.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Messages understood, in packet order.
    pub messages: Vec<Message>,
    /// Elements whose name telekad does not know.
    pub unknown: u32,
    /// Elements with a known name but a missing or mistyped field, or not a one-key object.
    pub malformed: u32,
    /// Elements past [`MAX_MESSAGES`], not looked at.
    pub excess: u32,
    /// Address entries inside `Peers`/`MaybeTheyHaveSome` that were not usable addresses.
    pub bad_addresses: u32,
}

/// Decodes one datagram. Never panics; allocation is bounded by the datagram's size.
pub fn decode(bytes: &[u8]) -> Result<Decoded, PacketError> {
    if bytes.len() > MAX_DATAGRAM {
        return Err(PacketError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| PacketError::NotJsonArray)?;
    let elements: Elements<'_> =
        serde_json::from_str(text).map_err(|_| PacketError::NotJsonArray)?;
    let mut out = Decoded {
        messages: Vec::with_capacity(elements.items.len()),
        excess: elements.excess,
        ..Decoded::default()
    };
    for raw in elements.items {
        match decode_element(raw, &mut out.bad_addresses) {
            Ok(m) => out.messages.push(m),
            Err(Skip::Unknown) => out.unknown += 1,
            Err(Skip::Malformed) => out.malformed += 1,
        }
    }
    Ok(out)
}

enum Skip {
    Unknown,
    Malformed,
}

/// The raw elements of the top-level array, at most [`MAX_MESSAGES`] of them.
struct Elements<'a> {
    items: Vec<&'a RawValue>,
    excess: u32,
}

impl<'de> Deserialize<'de> for Elements<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elements<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(8);
                let mut excess = 0u32;
                loop {
                    if items.len() < MAX_MESSAGES {
                        match seq.next_element::<&'de RawValue>()? {
                            Some(raw) => items.push(raw),
                            None => break,
                        }
                    } else {
                        match seq.next_element::<IgnoredAny>()? {
                            Some(_) => excess = excess.saturating_add(1),
                            None => break,
                        }
                    }
                }
                Ok(Elements { items, excess })
            }
        }
        d.deserialize_seq(V)
    }
}

/// Any JSON value, kept only if it is a string (borrowed unless it had escapes).
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A one-key object: the message name and its raw body.
struct Tagged<'a> {
    name: Cow<'a, str>,
    body: &'a RawValue,
}

impl<'de> Deserialize<'de> for Tagged<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tagged<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with exactly one key")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let name = map
                    .next_key::<Text<'de>>()?
                    .and_then(|t| t.0)
                    .ok_or_else(|| de::Error::custom("empty object"))?;
                let body: &'de RawValue = map.next_value()?;
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("more than one key"));
                }
                Ok(Tagged { name, body })
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct PeersBody<'a> {
    #[serde(borrow)]
    peers: Vec<Text<'a>>,
    #[serde(default, borrow)]
    target: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WhereBody<'a> {
    #[serde(default, borrow)]
    target: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    ed25519h: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AddrBody<'a> {
    #[serde(borrow)]
    addr: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ContentRequestBody<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_length")]
    length: u64,
}

fn default_length() -> u64 {
    super::BLOCK_SIZE as u64
}

#[derive(Deserialize)]
struct ContentBody<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    offset: u64,
    #[serde(borrow)]
    base64: Cow<'a, str>,
    eof: u64,
}

/// A whole `{"Content":{...}}` element, read in one pass (blocks are the largest and most
/// frequent elements during a download; the general path reads an element's body twice).
/// Anything it refuses goes through the general path, which decides.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentElement<'a> {
    #[serde(borrow, rename = "Content")]
    content: ContentBody<'a>,
}

fn content_message(c: ContentBody<'_>) -> Result<Message, Skip> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(c.base64.as_bytes())
        .map_err(|_| Skip::Malformed)?;
    Ok(Message::Content {
        id: id(&c.id)?,
        offset: c.offset,
        data,
        eof: c.eof,
    })
}

#[derive(Deserialize)]
struct MaybeBody<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    peers: Vec<Text<'a>>,
    #[serde(default)]
    holders: usize,
    #[serde(default, borrow)]
    notes: Vec<Text<'a>>,
}

#[derive(Deserialize)]
struct AnnounceBody<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    note: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct IdBody<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// An empty-object body; extra fields are allowed and ignored.
#[derive(Deserialize)]
struct EmptyBody {}

fn body<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, Skip> {
    serde_json::from_str(raw.get()).map_err(|_| Skip::Malformed)
}

fn id(s: &str) -> Result<NodeId, Skip> {
    NodeId::from_hex(s).map_err(|_| Skip::Malformed)
}

fn echo(raw: &RawValue) -> Result<Echo, Skip> {
    Echo::from_raw(raw).ok_or(Skip::Malformed)
}

fn addresses(list: &[Text<'_>], bad: &mut u32) -> Vec<SocketAddr> {
    let mut out = Vec::with_capacity(list.len().min(super::MAX_PEERS * 4));
    for entry in list {
        match entry.0.as_deref().and_then(parse_peer) {
            Some(a) if !out.contains(&a) => out.push(a),
            Some(_) => {}
            None => *bad = bad.saturating_add(1),
        }
    }
    out
}

fn decode_element(raw: &RawValue, bad_addresses: &mut u32) -> Result<Message, Skip> {
    if raw.get().starts_with("{\"Content\":") {
        if let Ok(ContentElement { content }) = serde_json::from_str(raw.get()) {
            return content_message(content);
        }
    }
    let Tagged { name, body: b } = serde_json::from_str(raw.get()).map_err(|_| Skip::Malformed)?;
    Ok(match name.as_ref() {
        "PleaseSendPeers" => {
            body::<EmptyBody>(b)?;
            Message::PleaseSendPeers
        }
        "Peers" => {
            let p: PeersBody<'_> = body(b)?;
            let target = p.target.as_deref().map(id).transpose()?;
            Message::Peers {
                peers: addresses(&p.peers, bad_addresses),
                target,
            }
        }
        "PleaseAlwaysReturnThisMessage" => Message::PleaseAlwaysReturnThisMessage(echo(b)?),
        "AlwaysReturned" => Message::AlwaysReturned(echo(b)?),
        "PleaseReturnThisMessage" => Message::PleaseReturnThisMessage(echo(b)?),
        "ReturnedMessage" => Message::ReturnedMessage(echo(b)?),
        "WhereAreThey" => {
            let w: WhereBody<'_> = body(b)?;
            let text = w.target.or(w.ed25519h).ok_or(Skip::Malformed)?;
            Message::WhereAreThey { target: id(&text)? }
        }
        "YourAddressIs" => {
            let a: AddrBody<'_> = body(b)?;
            Message::YourAddressIs {
                addr: parse_peer(&a.addr).ok_or(Skip::Malformed)?,
            }
        }
        "PleaseSendContent" => {
            let c: ContentRequestBody<'_> = body(b)?;
            Message::PleaseSendContent {
                id: id(&c.id)?,
                offset: c.offset,
                length: c.length,
            }
        }
        "Content" => content_message(body(b)?)?,
        "MaybeTheyHaveSome" => {
            let m: MaybeBody<'_> = body(b)?;
            let peers = addresses(&m.peers, bad_addresses);
            let holders = m.holders.min(peers.len());
            let notes = m
                .notes
                .iter()
                .take(holders)
                .map(|t| match t.0.as_deref() {
                    Some(n) if n.len() <= crate::records::MAX_NOTE => n.to_owned(),
                    _ => String::new(),
                })
                .collect();
            Message::MaybeTheyHaveSome {
                id: id(&m.id)?,
                peers,
                holders,
                notes,
            }
        }
        "IHaveSome" => {
            let a: AnnounceBody<'_> = body(b)?;
            let note = a.note.unwrap_or_default();
            if note.len() > crate::records::MAX_NOTE {
                return Err(Skip::Malformed);
            }
            Message::IHaveSome {
                id: id(&a.id)?,
                note: note.into_owned(),
            }
        }
        "WhoHasSome" => {
            let w: IdBody<'_> = body(b)?;
            Message::WhoHasSome { id: id(&w.id)? }
        }
        "PleaseListSupportedMessages" => {
            body::<EmptyBody>(b)?;
            Message::PleaseListSupportedMessages
        }
        "SupportedMessages" => Message::SupportedMessages,
        "Padding" => Message::Padding { len: b.get().len() },
        other => match IGNORED_MESSAGES.iter().find(|n| **n == other) {
            Some(n) => Message::Ignored(n),
            None => return Err(Skip::Unknown),
        },
    })
}
