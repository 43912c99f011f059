//! Tolerant decoding: a bad element is skipped and counted, the rest of the array still counts.

use super::{Echo, Message, IGNORED_MESSAGES, MAX_DATAGRAM, MAX_MESSAGES};
use crate::addr::parse_peer;
use crate::id::NodeId;
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
    // Well-formed packets, nearly all of them, are read in one pass. Anything that pass
    // refuses is read again element by element, so that one bad element costs only itself.
    match one_pass(text) {
        Some(d) => Ok(d),
        None => tolerant(text),
    }
}

/// The packet in one pass, or `None` if any element is not as expected.
fn one_pass(text: &str) -> Option<Decoded> {
    let mut out = Decoded::default();
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_seq(OnePass(&mut out)).ok()?;
    de.end().ok()?;
    Some(out)
}

/// The packet element by element: each element is delimited first, then read on its own.
fn tolerant(text: &str) -> Result<Decoded, PacketError> {
    let elements: Elements<'_> =
        serde_json::from_str(text).map_err(|_| PacketError::NotJsonArray)?;
    let mut out = Decoded {
        messages: Vec::with_capacity(elements.items.len()),
        excess: elements.excess,
        ..Decoded::default()
    };
    for raw in elements.items {
        let m = decode_element(raw, &mut out.bad_addresses);
        out.push(m);
    }
    Ok(out)
}

enum Skip {
    Unknown,
    Malformed,
}

impl Decoded {
    fn push(&mut self, m: Result<Message, Skip>) {
        match m {
            Ok(m) => self.messages.push(m),
            Err(Skip::Unknown) => self.unknown += 1,
            Err(Skip::Malformed) => self.malformed += 1,
        }
    }
}

/// The whole array in one pass. It fails, and the tolerant path takes over, on an element
/// that is not a one-key object with a body of the expected shape, or past
/// [`MAX_MESSAGES`] elements.
struct OnePass<'o>(&'o mut Decoded);

impl<'de> Visitor<'de> for OnePass<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of messages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.0;
        loop {
            let seed = ElementSeed {
                bad_addresses: &mut out.bad_addresses,
            };
            match seq.next_element_seed(seed)? {
                Some(_)
                    if out.messages.len() + (out.unknown + out.malformed) as usize
                        >= MAX_MESSAGES =>
                {
                    return Err(de::Error::custom("too many elements"))
                }
                Some(m) => out.push(m),
                None => return Ok(()),
            }
        }
    }
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

fn content_message(c: ContentBody<'_>) -> Result<Message, Skip> {
    let data = base64_simd::STANDARD
        .decode_to_vec(c.base64.as_bytes())
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

/// One element read on its own (the tolerant path): anything wrong inside it skips only it.
fn decode_element(raw: &RawValue, bad_addresses: &mut u32) -> Result<Message, Skip> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let m = de::DeserializeSeed::deserialize(ElementSeed { bad_addresses }, &mut de)
        .map_err(|_| Skip::Malformed)?;
    de.end().map_err(|_| Skip::Malformed)?;
    m
}

/// Reads a one-key object `{"Name": body}` into a message: `Err(Skip)` for an element that
/// is well-formed JSON but not a usable message, a deserializer error for one whose body
/// does not have the expected JSON shape.
struct ElementSeed<'b> {
    bad_addresses: &'b mut u32,
}

impl<'de> de::DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = Result<Message, Skip>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_> {
    type Value = Result<Message, Skip>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with exactly one key")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let name = map
            .next_key::<Text<'de>>()?
            .and_then(|t| t.0)
            .ok_or_else(|| de::Error::custom("empty object"))?;
        let m = map.next_value_seed(BodySeed {
            name: &name,
            bad_addresses: self.bad_addresses,
        })?;
        if map.next_key::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("more than one key"));
        }
        Ok(m)
    }
}

/// The body of the message `name`.
struct BodySeed<'n, 'b> {
    name: &'n str,
    bad_addresses: &'b mut u32,
}

impl<'de> de::DeserializeSeed<'de> for BodySeed<'_, '_> {
    type Value = Result<Message, Skip>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        message(self.name, d, self.bad_addresses)
    }
}

/// Deserializes `T` from `d`.
fn body<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    T::deserialize(d)
}

/// The message named `name` whose body `d` holds.
fn message<'de, D: Deserializer<'de>>(
    name: &str,
    d: D,
    bad_addresses: &mut u32,
) -> Result<Result<Message, Skip>, D::Error> {
    Ok(Ok(match name {
        "PleaseSendPeers" => {
            body::<EmptyBody, _>(d)?;
            Message::PleaseSendPeers
        }
        "Peers" => {
            let p: PeersBody<'_> = body(d)?;
            let target = match p.target.as_deref().map(id).transpose() {
                Ok(t) => t,
                Err(skip) => return Ok(Err(skip)),
            };
            Message::Peers {
                peers: addresses(&p.peers, bad_addresses),
                target,
            }
        }
        "PleaseAlwaysReturnThisMessage" => {
            return Ok(echo(body(d)?).map(Message::PleaseAlwaysReturnThisMessage))
        }
        "AlwaysReturned" => return Ok(echo(body(d)?).map(Message::AlwaysReturned)),
        "PleaseReturnThisMessage" => {
            return Ok(echo(body(d)?).map(Message::PleaseReturnThisMessage))
        }
        "ReturnedMessage" => return Ok(echo(body(d)?).map(Message::ReturnedMessage)),
        "WhereAreThey" => {
            let w: WhereBody<'_> = body(d)?;
            let Some(text) = w.target.or(w.ed25519h) else {
                return Ok(Err(Skip::Malformed));
            };
            match id(&text) {
                Ok(target) => Message::WhereAreThey { target },
                Err(skip) => return Ok(Err(skip)),
            }
        }
        "YourAddressIs" => {
            let a: AddrBody<'_> = body(d)?;
            match parse_peer(&a.addr) {
                Some(addr) => Message::YourAddressIs { addr },
                None => return Ok(Err(Skip::Malformed)),
            }
        }
        "PleaseSendContent" => {
            let c: ContentRequestBody<'_> = body(d)?;
            match id(&c.id) {
                Ok(id) => Message::PleaseSendContent {
                    id,
                    offset: c.offset,
                    length: c.length,
                },
                Err(skip) => return Ok(Err(skip)),
            }
        }
        "Content" => return Ok(content_message(body(d)?)),
        "MaybeTheyHaveSome" => {
            let m: MaybeBody<'_> = body(d)?;
            let Ok(id) = id(&m.id) else {
                return Ok(Err(Skip::Malformed));
            };
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
                id,
                peers,
                holders,
                notes,
            }
        }
        "IHaveSome" => {
            let a: AnnounceBody<'_> = body(d)?;
            let note = a.note.unwrap_or_default();
            if note.len() > crate::records::MAX_NOTE {
                return Ok(Err(Skip::Malformed));
            }
            match id(&a.id) {
                Ok(id) => Message::IHaveSome {
                    id,
                    note: note.into_owned(),
                },
                Err(skip) => return Ok(Err(skip)),
            }
        }
        "WhoHasSome" => {
            let w: IdBody<'_> = body(d)?;
            match id(&w.id) {
                Ok(id) => Message::WhoHasSome { id },
                Err(skip) => return Ok(Err(skip)),
            }
        }
        "PleaseListSupportedMessages" => {
            body::<EmptyBody, _>(d)?;
            Message::PleaseListSupportedMessages
        }
        "SupportedMessages" => {
            body::<IgnoredAny, _>(d)?;
            Message::SupportedMessages
        }
        "Padding" => {
            let raw: &RawValue = body(d)?;
            Message::Padding {
                len: raw.get().len(),
            }
        }
        other => {
            body::<IgnoredAny, _>(d)?;
            match IGNORED_MESSAGES.iter().find(|n| **n == other) {
                Some(n) => Message::Ignored(n),
                None => return Ok(Err(Skip::Unknown)),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    /// Elements every path reads as messages (or as counted unknown ones), then elements
    /// with a body of the wrong shape, which only the tolerant path can skip on their own.
    fn elements() -> (Vec<String>, Vec<String>) {
        let good = vec![
            r#"{"PleaseSendPeers":{}}"#.to_owned(),
            r#"{"PleaseSendPeers":{"extra":[1,{"a":2}]}}"#.to_owned(),
            r#"{"Peers":{"peers":["127.0.0.1:9","[::1]:7",5,"junk",null,"127.0.0.1:9"]}}"#
                .to_owned(),
            format!(r#"{{"Peers":{{"peers":[],"target":"{HEX}"}}}}"#),
            format!(r#"{{"Peers":{{"peers":["127.0.0.2:1"],"target":"nothex"}}}}"#),
            format!(r#"{{"WhereAreThey":{{"target":"{HEX}"}}}}"#),
            format!(r#"{{"WhereAreThey":{{"ed25519h":"{HEX}"}}}}"#),
            r#"{"WhereAreThey":{}}"#.to_owned(),
            r#"{"PleaseAlwaysReturnThisMessage":{"cookie":"abc"}}"#.to_owned(),
            r#"{"AlwaysReturned":[1,"two",{"three":3}]}"#.to_owned(),
            r#"{"PleaseReturnThisMessage":"x"}"#.to_owned(),
            r#"{"ReturnedMessage":null}"#.to_owned(),
            r#"{"YourAddressIs":{"addr":"127.0.0.1:5"}}"#.to_owned(),
            r#"{"YourAddressIs":{"addr":"nowhere"}}"#.to_owned(),
            format!(r#"{{"PleaseSendContent":{{"id":"{HEX}","offset":4096}}}}"#),
            format!(r#"{{"Content":{{"id":"{HEX}","offset":0,"base64":"AAEC","eof":3}}}}"#),
            format!(r#"{{"Content":{{"id":"{HEX}","offset":0,"base64":"A","eof":3}}}}"#),
            format!(
                r#"{{"MaybeTheyHaveSome":{{"id":"{HEX}","peers":["127.0.0.3:3"],"holders":1,"notes":["lobby"]}}}}"#
            ),
            format!(r#"{{"IHaveSome":{{"id":"{HEX}","note":"n"}}}}"#),
            format!(r#"{{"WhoHasSome":{{"id":"{HEX}"}}}}"#),
            r#"{"WhoHasSome":{"id":"abc"}}"#.to_owned(),
            r#"{"PleaseListSupportedMessages":{}}"#.to_owned(),
            r#"{"SupportedMessages":["Peers"]}"#.to_owned(),
            r#"{"Padding":"      "}"#.to_owned(),
            r#"{"ChatMessage":{"text":"hi"}}"#.to_owned(),
            r#"{"NoSuchMessage":1}"#.to_owned(),
            r#"{"Pe\u0065rs":{"peers":[]}}"#.to_owned(),
        ];
        let bad = vec![
            r#"{"Peers":{"peers":5}}"#.to_owned(),
            r#"{"Peers":{}}"#.to_owned(),
            format!(r#"{{"Content":{{"id":"{HEX}","offset":"0","base64":"","eof":0}}}}"#),
            r#"{"PleaseSendPeers":[]}"#.to_owned(),
            r#"{"YourAddressIs":{"addr":7}}"#.to_owned(),
            r#"{"A":{},"B":{}}"#.to_owned(),
            r#"{}"#.to_owned(),
            r#"5"#.to_owned(),
            r#"["Peers"]"#.to_owned(),
        ];
        (good, bad)
    }

    fn packet(picks: &[usize], all: &[String]) -> String {
        let parts: Vec<&str> = picks.iter().map(|&i| all[i % all.len()].as_str()).collect();
        format!("[{}]", parts.join(","))
    }

    proptest! {
        /// Whenever the one-pass read accepts a packet, it agrees with the tolerant read,
        /// whatever the elements and whatever one byte was changed.
        #[test]
        fn one_pass_agrees_with_the_tolerant_path(
            picks in prop::collection::vec(0usize..64, 0..MAX_MESSAGES + 3),
            with_bad in any::<bool>(),
            flip in prop::option::of((any::<usize>(), 0x20u8..0x7f)),
        ) {
            let (good, bad) = elements();
            let all: Vec<String> = if with_bad { good.iter().chain(&bad).cloned().collect() } else { good };
            let mut text = packet(&picks, &all).into_bytes();
            if let Some((at, b)) = flip {
                let n = text.len();
                text[at % n] = b;
            }
            let text = String::from_utf8(text).expect("ASCII");
            if let Some(d) = one_pass(&text) {
                prop_assert_eq!(Ok(d), tolerant(&text));
            }
        }

        /// Packets of well-shaped elements take the one-pass read, up to the element limit.
        #[test]
        fn well_shaped_packets_take_one_pass(
            picks in prop::collection::vec(0usize..64, 0..MAX_MESSAGES + 3),
        ) {
            let (good, _) = elements();
            let text = packet(&picks, &good);
            let fast = one_pass(&text);
            prop_assert_eq!(fast.is_some(), picks.len() <= MAX_MESSAGES);
            prop_assert_eq!(decode(text.as_bytes()), tolerant(&text));
        }
    }

    proptest! {
        /// Block data decodes exactly as the `base64` crate's strict standard engine
        /// decodes it (padding required, no whitespace, no stray trailing bits): the same
        /// strings are accepted, with the same bytes.
        #[test]
        fn base64_matches_the_reference_decoder(
            text in "[A-Za-z0-9+/=\\ ]{0,24}",
            data in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            use base64::Engine as _;
            let reference = base64::engine::general_purpose::STANDARD;
            let ours = base64_simd::STANDARD.decode_to_vec(text.as_bytes()).ok();
            prop_assert_eq!(ours, reference.decode(text.as_bytes()).ok());
            let encoded = base64_simd::STANDARD.encode_to_string(&data);
            prop_assert_eq!(&encoded, &reference.encode(&data));
            prop_assert_eq!(base64_simd::STANDARD.decode_to_vec(encoded.as_bytes()).ok(), Some(data));
        }
    }

    #[test]
    fn base64_edge_cases_match_the_reference_decoder() {
        use base64::Engine as _;
        let reference = base64::engine::general_purpose::STANDARD;
        for text in [
            "", "aGk=", "aGl=", "aGk", "aGk==", "aG k=", "====", "AA==", "AB==", "AAA=", "AAB=",
            "aGk=aGk=", "\\GGG",
        ] {
            assert_eq!(
                base64_simd::STANDARD.decode_to_vec(text.as_bytes()).ok(),
                reference.decode(text.as_bytes()).ok(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn a_bad_element_costs_only_itself() {
        let text =
            format!(r#"[{{"Peers":{{"peers":5}}}},{{"WhereAreThey":{{"target":"{HEX}"}}}}]"#);
        assert!(one_pass(&text).is_none());
        let d = decode(text.as_bytes()).expect("an array");
        assert_eq!(d.malformed, 1);
        assert_eq!(d.messages.len(), 1);
    }
}
