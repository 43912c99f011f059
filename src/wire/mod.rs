//! The cjp2p wire: every datagram is one JSON array of single-key objects, one per message.
//!
//! [`Message`] is the typed form of every message telekad understands; [`decode`] turns a
//! datagram into messages the tolerant cjp2p way, and [`PacketWriter`] builds datagrams within a
//! byte budget (the anti-amplification limit).

mod decode;
mod encode;

pub use decode::{decode, Decoded, PacketError};
pub use encode::{encode_packet, recycle, PacketWriter};

use crate::id::NodeId;
use serde_json::value::RawValue;
use std::net::SocketAddr;

/// Largest datagram telekad reads (the UDP maximum payload).
pub const MAX_DATAGRAM: usize = 65_507;
/// Most messages read from one datagram; the rest are skipped and counted.
pub const MAX_MESSAGES: usize = 64;
/// Largest echo body (`{"cookie": ...}`) telekad stores or repeats, in bytes of JSON.
pub const MAX_ECHO: usize = 256;
/// Most addresses telekad puts into one `Peers` or `MaybeTheyHaveSome` message.
pub const MAX_PEERS: usize = 20;
/// Bytes of IPv4 + UDP header counted on every datagram by the amplification rule.
pub const HEADER_OVERHEAD: usize = 28;
/// Size of a content block, as cjp2p nodes serve them.
pub const BLOCK_SIZE: usize = 4096;

/// A JSON body repeated verbatim: the value of the cookie messages.
///
/// cjp2p nodes send `{"cookie":"<string>"}`; the protocol allows any JSON, so the exact bytes
/// are kept and echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Echo(Box<str>);

impl Echo {
    /// The body `{"cookie":"<value>"}`. `value` must not need JSON escaping (telekad only
    /// makes hex and `.`-separated digits).
    pub fn cookie(value: &str) -> Echo {
        Echo(format!("{{\"cookie\":\"{value}\"}}").into_boxed_str())
    }

    /// A body from raw JSON text (as received earlier); the caller vouches it is valid JSON.
    pub fn raw(json: &str) -> Echo {
        Echo(json.into())
    }

    /// The raw JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The string inside `{"cookie": "..."}`, if the body has that shape.
    pub fn cookie_str(&self) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct C {
            cookie: String,
        }
        serde_json::from_str::<C>(&self.0).ok().map(|c| c.cookie)
    }

    pub(crate) fn from_raw(raw: &RawValue) -> Option<Echo> {
        let s = raw.get();
        (s.len() <= MAX_ECHO).then(|| Echo(s.into()))
    }
}

/// Names of cjp2p messages telekad recognises and deliberately does not act on.
pub const IGNORED_MESSAGES: &[&str] = &[
    "MyPublicKey",
    "SignedMessage",
    "ChatMessage",
    "GroupChatMessage",
    "EncryptedMessages",
    "FastEncryptedMessages",
    "Forward",
    "Forwarded",
    "GetLatest",
    "Latest",
    "ContentList",
    "PleaseListContent",
    "YouShouldSeeThis",
    "IJustSawThis",
    "SignedPub",
    "GetPubByEth",
];

/// One message on the cjp2p wire, in typed form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `{"PleaseSendPeers":{}}`: ask for addresses of other nodes.
    PleaseSendPeers,
    /// `{"Peers":{"peers":[...],"target":"<hex>"}}`: addresses; `target` (telekad's extension)
    /// names the `WhereAreThey` target this answers.
    Peers {
        /// The addresses, closest to the target first when a target is named.
        peers: Vec<SocketAddr>,
        /// The target this list answers, if it answers a `WhereAreThey`.
        target: Option<NodeId>,
    },
    /// `{"PleaseAlwaysReturnThisMessage":<echo>}`: attach this to every packet you send me.
    PleaseAlwaysReturnThisMessage(Echo),
    /// `{"AlwaysReturned":<echo>}`: the cookie the receiver asked for.
    AlwaysReturned(Echo),
    /// `{"PleaseReturnThisMessage":<echo>}`: echo this once (RTT probe, reachability proof).
    PleaseReturnThisMessage(Echo),
    /// `{"ReturnedMessage":<echo>}`: the echo of a `PleaseReturnThisMessage`.
    ReturnedMessage(Echo),
    /// `{"WhereAreThey":{"target":"<hex>"}}` (or the reference node's `ed25519h`): ask for the
    /// closest known contacts to `target`.
    WhereAreThey {
        /// The ID being looked up.
        target: NodeId,
    },
    /// `{"YourAddressIs":{"addr":"ip:port"}}`: the address the sender sees the receiver at.
    YourAddressIs {
        /// The receiver's address as the sender saw it.
        addr: SocketAddr,
    },
    /// `{"PleaseSendContent":{"id":"<hex>","offset":0,"length":4096}}`.
    PleaseSendContent {
        /// SHA-256 of the whole content.
        id: NodeId,
        /// First byte wanted.
        offset: u64,
        /// Bytes wanted.
        length: u64,
    },
    /// `{"Content":{"id":"<hex>","offset":0,"base64":"...","eof":N}}`: one block.
    Content {
        /// SHA-256 of the whole content.
        id: NodeId,
        /// Where this block starts.
        offset: u64,
        /// The block's bytes (base64 on the wire).
        data: Vec<u8>,
        /// Total length of the whole content.
        eof: u64,
    },
    /// `{"MaybeTheyHaveSome":{"id":"<hex>","peers":[...],"holders":n,"notes":[...]}}`: ask
    /// these about `id`. telekad lists the known holders first and says how many they are
    /// (`holders`, with their announcement notes); old nodes ignore those two fields.
    MaybeTheyHaveSome {
        /// The content id or topic key.
        id: NodeId,
        /// Holders, then contacts close to `id`.
        peers: Vec<SocketAddr>,
        /// How many of `peers`, from the front, announced that they hold `id`.
        holders: usize,
        /// The holders' notes, in order (may be shorter than `holders`: missing notes are
        /// empty).
        notes: Vec<String>,
    },
    /// `{"IHaveSome":{"id":"<hex>","note":"..."}}`: the sender holds `id` (content, or
    /// membership of a topic) and asks the receiver to record its address for a while.
    IHaveSome {
        /// The content id or topic key.
        id: NodeId,
        /// A short note (at most 256 bytes): players, map name, ...
        note: String,
    },
    /// `{"WhoHasSome":{"id":"<hex>"}}`: ask for the recorded holders of `id` and the contacts
    /// closest to it (answered with `MaybeTheyHaveSome`).
    WhoHasSome {
        /// The content id or topic key.
        id: NodeId,
    },
    /// `{"PleaseListSupportedMessages":{}}`.
    PleaseListSupportedMessages,
    /// `{"SupportedMessages":{"schema":{"messages":[...]}}}`: the answer to
    /// `PleaseListSupportedMessages` (telekad lists [`SUPPORTED_MESSAGES`]; a received one is
    /// accepted and not acted on).
    SupportedMessages,
    /// `{"Padding":{"p":"000..."}}`: telekad's filler that makes a first-contact request big
    /// enough for a full answer under the amplification limit. Receivers ignore it.
    Padding {
        /// Filler characters.
        len: usize,
    },
    /// A cjp2p message telekad recognises by name and ignores (see [`IGNORED_MESSAGES`]).
    Ignored(&'static str),
}

impl Message {
    /// Whether the message asks its receiver for an answer (a datagram holding one is a
    /// request: it is answered once, within the amplification limit, and charged to the
    /// sender's rate budget).
    pub fn is_request(&self) -> bool {
        matches!(
            self,
            Message::WhereAreThey { .. }
                | Message::PleaseSendPeers
                | Message::PleaseListSupportedMessages
                | Message::PleaseReturnThisMessage(_)
                | Message::PleaseSendContent { .. }
                | Message::WhoHasSome { .. }
        )
    }

    /// The message's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Message::PleaseSendPeers => "PleaseSendPeers",
            Message::Peers { .. } => "Peers",
            Message::PleaseAlwaysReturnThisMessage(_) => "PleaseAlwaysReturnThisMessage",
            Message::AlwaysReturned(_) => "AlwaysReturned",
            Message::PleaseReturnThisMessage(_) => "PleaseReturnThisMessage",
            Message::ReturnedMessage(_) => "ReturnedMessage",
            Message::WhereAreThey { .. } => "WhereAreThey",
            Message::YourAddressIs { .. } => "YourAddressIs",
            Message::PleaseSendContent { .. } => "PleaseSendContent",
            Message::Content { .. } => "Content",
            Message::MaybeTheyHaveSome { .. } => "MaybeTheyHaveSome",
            Message::IHaveSome { .. } => "IHaveSome",
            Message::WhoHasSome { .. } => "WhoHasSome",
            Message::PleaseListSupportedMessages => "PleaseListSupportedMessages",
            Message::SupportedMessages => "SupportedMessages",
            Message::Padding { .. } => "Padding",
            Message::Ignored(name) => name,
        }
    }
}

/// The names telekad answers or acts on, as listed in its `SupportedMessages` reply.
pub const SUPPORTED_MESSAGES: &[&str] = &[
    "PleaseSendPeers",
    "Peers",
    "PleaseAlwaysReturnThisMessage",
    "AlwaysReturned",
    "PleaseReturnThisMessage",
    "ReturnedMessage",
    "WhereAreThey",
    "YourAddressIs",
    "PleaseSendContent",
    "Content",
    "MaybeTheyHaveSome",
    "IHaveSome",
    "WhoHasSome",
    "PleaseListSupportedMessages",
];
