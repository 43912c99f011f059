#!/usr/bin/env python3
"""Regenerates the test vectors in this directory from the rules in spec/wire.md and
spec/dht.md.

Every expected value here is computed with Python's standard library (hashlib, base64,
ipaddress) or written down by hand from the spec; nothing is obtained by running telekad, so
tests/vectors.rs is an independent check of the Rust code.

    python3 spec/vectors/generate.py        # rewrites spec/vectors/*.json
"""

import base64
import hashlib
import ipaddress
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))

# Numbers from the spec (spec/wire.md, spec/dht.md).
MAX_DATAGRAM = 65507
MAX_MESSAGES = 64
MAX_ECHO = 256
MAX_PEERS = 20
HEADER_OVERHEAD = 28
BLOCK_SIZE = 4096
COOKIE_HEX = 16
MAX_ADDR_TEXT = 47

IGNORED = [
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
]
SUPPORTED = [
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
]


def sha(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------
# Addresses: the canonical text form (spec/dht.md "Node ID"), written independently of
# Python's own IPv6 formatting (which changed for mapped addresses across versions).


def v6_text(ip):
    """RFC 5952 text of an IPv6 address: lowercase, no leading zeros, the longest run (the
    first on a tie) of two or more zero groups as '::'. Never dotted-quad."""
    packed = ip.packed
    groups = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    best_start, best_len = -1, 0
    i = 0
    while i < 8:
        if groups[i] == 0:
            j = i
            while j < 8 and groups[j] == 0:
                j += 1
            if j - i > best_len:
                best_start, best_len = i, j - i
            i = j
        else:
            i += 1
    hexes = ["%x" % g for g in groups]
    if best_len < 2:
        return ":".join(hexes)
    left = ":".join(hexes[:best_start])
    right = ":".join(hexes[best_start + best_len :])
    return left + "::" + right


def split_addr(text):
    """(ip object, port) of 'a.b.c.d:port' or '[v6(%scope)]:port' (scope dropped)."""
    if text.startswith("["):
        host, rest = text[1:].split("]", 1)
        assert rest.startswith(":")
        port = int(rest[1:])
        host = host.split("%", 1)[0]
        return ipaddress.IPv6Address(host), port
    host, port = text.rsplit(":", 1)
    return ipaddress.IPv4Address(host), int(port)


def canonical(text):
    ip, port = split_addr(text)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "%s:%d" % (ip.ipv4_mapped, port)
        return "[%s]:%d" % (v6_text(ip), port)
    return "%s:%d" % (ip, port)


def node_id(text):
    return sha(canonical(text))


def xor_hex(a, b):
    return "%064x" % (int(a, 16) ^ int(b, 16))


def bucket_index(a, b):
    d = int(a, 16) ^ int(b, 16)
    if d == 0:
        return None
    return 256 - d.bit_length()


# ---------------------------------------------------------------------------------------
# Decoded-message shapes used by the vectors (see README.md).


def PSP():
    return {"PleaseSendPeers": {}}


def PEERS(peers, target=None):
    return {"Peers": {"peers": peers, "target": target}}


def ECHO(name, json_text, cookie):
    return {name: {"json": json_text, "cookie": cookie}}


def WHERE(target):
    return {"WhereAreThey": {"target": target}}


def YAI(addr):
    return {"YourAddressIs": {"addr": addr}}


def PSC(id_, offset, length):
    return {"PleaseSendContent": {"id": id_, "offset": offset, "length": length}}


def CONTENT(id_, offset, data, eof):
    return {"Content": {"id": id_, "offset": offset, "data_hex": data.hex(), "eof": eof}}


def MAYBE(id_, peers, holders=0, notes=()):
    return {"MaybeTheyHaveSome": {"id": id_, "peers": peers, "holders": holders,
                                  "notes": list(notes)}}


def IHAVE(id_, note=""):
    return {"IHaveSome": {"id": id_, "note": note}}


def WHO(id_):
    return {"WhoHasSome": {"id": id_}}


def PLSM():
    return {"PleaseListSupportedMessages": {}}


def SM():
    return {"SupportedMessages": {}}


def PAD(n):
    return {"Padding": {"len": n}}


def IGN(name):
    return {"Ignored": {"name": name}}


def ok(messages, unknown=0, malformed=0, excess=0, bad_addresses=0):
    return {
        "messages": messages,
        "unknown": unknown,
        "malformed": malformed,
        "excess": excess,
        "bad_addresses": bad_addresses,
    }


def dropped(why):
    return {"dropped": why}


# Some ids used throughout.
ID_TARGET = sha("telekad test target")  # an arbitrary key
ID_CONTENT = sha(b"hi")  # the content id of the two bytes "hi"
ID_ED = "e13a614dff88de239a986bea20ca129c3dc77bb727fac18f2f092eed27cfb3fb"  # an ed25519 key
ZERO = "0" * 64


def j(obj):
    """Compact JSON, as the vectors' datagrams are written."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def packets():
    v = []

    def add(name, expect, text=None, hexdata=None, pad_to=None, note=None, known_bug=None):
        item = {"name": name}
        if text is not None:
            item["text"] = text
        if hexdata is not None:
            item["hex"] = hexdata
        if pad_to is not None:
            item["pad_to"] = pad_to
        if note:
            item["note"] = note
        if known_bug:
            item["known_bug"] = known_bug
        item["expect"] = expect
        v.append(item)

    # --- Valid messages of every kind -------------------------------------------------
    add("please_send_peers", ok([PSP()]), '[{"PleaseSendPeers":{}}]')
    add(
        "please_send_peers_extra_fields_ignored",
        ok([PSP()]),
        '[{"PleaseSendPeers":{"since":5,"note":"x","deep":[[[{}]]]}}]',
    )
    add(
        "whitespace_everywhere",
        ok([PSP()]),
        ' \r\n\t[ { "PleaseSendPeers" : { } } ] \n',
    )
    add(
        "peers_reference_shape",
        ok([PEERS(["192.0.2.10:24254", "[2001:db8::1]:24254"])]),
        '[{"Peers":{"peers":["192.0.2.10:24254","[2001:db8::1]:24254"]}}]',
        note="wire-notes.md: the reference node's Peers answer, no ids, no target",
    )
    add(
        "peers_with_target",
        ok([PEERS(["192.0.2.10:24254"], ID_TARGET)]),
        j({"Peers": {"peers": ["192.0.2.10:24254"], "target": ID_TARGET}}).join("[]"),
    )
    add(
        "peers_target_uppercase_accepted",
        ok([PEERS([], ID_TARGET)]),
        j({"Peers": {"peers": [], "target": ID_TARGET.upper()}}).join("[]"),
    )
    add(
        "peers_target_null_means_absent",
        ok([PEERS(["192.0.2.10:24254"])]),
        '[{"Peers":{"peers":["192.0.2.10:24254"],"target":null}}]',
    )
    add(
        "peers_unknown_field_ignored",
        ok([PEERS(["192.0.2.10:24254"])]),
        '[{"Peers":{"peers":["192.0.2.10:24254"],"ids":["ab"],"v":2}}]',
    )
    add("peers_empty_list", ok([PEERS([])]), '[{"Peers":{"peers":[]}}]')
    add(
        "peers_canonical_and_deduplicated",
        ok([PEERS(["192.0.2.1:1", "[2001:db8::1]:2"])]),
        j(
            {
                "Peers": {
                    "peers": [
                        "192.0.2.1:1",
                        "[::ffff:192.0.2.1]:1",
                        "[2001:DB8:0:0:0:0:0:1]:2",
                        "192.0.2.1:1",
                        "[2001:db8::1%7]:2",
                    ]
                }
            }
        ).join("[]"),
        note="IPv4-mapped becomes IPv4, IPv6 is written in RFC 5952 form, scope ids are "
        "dropped, and an address already in the list is dropped silently (not counted)",
    )
    add(
        "peers_escaped_entry",
        ok([PEERS(["192.0.2.1:24254"])]),
        '[{"Peers":{"peers":["\\u0031\\u00392.0.2.1:24254"]}}]',
    )
    bad_entries = [
        "192.0.2.1:0",  # port 0
        "0.0.0.0:24254",  # unspecified
        "[::]:24254",  # unspecified
        "[::ffff:0.0.0.0]:24254",  # mapped unspecified
        "224.0.0.1:24254",  # multicast
        "239.255.255.250:1900",  # multicast
        "[ff02::1]:24254",  # multicast
        "[ff0e::1]:24254",  # multicast
        "255.255.255.255:24254",  # broadcast
        "[::ffff:255.255.255.255]:24254",  # mapped broadcast
        "[2001:db8::1]:0",  # port 0
        "192.0.2.1",  # no port
        "[2001:db8::1]",  # no port
        "2001:db8::1:24254",  # IPv6 without brackets
        "example.com:24254",  # names are not resolved
        "192.0.2.1:65536",  # port out of range
        "01.2.3.4:5",  # leading zero in an octet
        " 192.0.2.1:1",  # whitespace
        "192.0.2.1:1 ",  # whitespace
        "",  # empty
        "[0000:0000:0000:0000:0000:0000:0000:0001%1]:24254",  # 50 chars > 47
    ]
    good_entries = [
        "192.0.2.2:24254",
        "127.0.0.1:1",
        "10.0.0.1:24254",  # private addresses are allowed
        "192.0.2.3:00080",  # leading zeros in the port are allowed
        "[0000:0000:0000:0000:0000:0000:0000:0001]:24254",  # exactly 47 chars
        "[fe80::1%2]:24254",  # link-local with scope: scope dropped
    ]
    assert len(bad_entries[-1]) > MAX_ADDR_TEXT and len(good_entries[4]) == MAX_ADDR_TEXT
    add(
        "peers_bad_entries_skipped_individually",
        ok(
            [PEERS([canonical(g) for g in good_entries])],
            bad_addresses=len(bad_entries),
        ),
        j({"Peers": {"peers": bad_entries + good_entries}}).join("[]"),
    )
    add(
        "peers_non_string_entries_skipped_individually",
        ok([PEERS(["192.0.2.1:1", "192.0.2.2:2"])], bad_addresses=4),
        '[{"Peers":{"peers":["192.0.2.1:1",7,null,{"ip":"192.0.2.9"},["x"],"192.0.2.2:2"]}}]',
        note="a non-string entry is one bad address, not a malformed message",
    )
    add(
        "peers_bad_entries_not_counted_in_malformed_message",
        ok([], malformed=1),
        '[{"Peers":{"peers":["192.0.2.1:0","x"],"target":"00"}}]',
        note="the element is malformed (bad target); its entries are not looked at",
    )

    # Cookies: echo bodies are kept verbatim.
    add(
        "always_return_reference_shape",
        ok(
            [
                ECHO("PleaseAlwaysReturnThisMessage", '{"cookie":"b941170a"}', "b941170a"),
                ECHO("AlwaysReturned", '{"cookie":"b941170a"}', "b941170a"),
            ]
        ),
        '[{"PleaseAlwaysReturnThisMessage":{"cookie":"b941170a"}},'
        '{"AlwaysReturned":{"cookie":"b941170a"}}]',
    )
    add(
        "always_return_telekad_shape",
        ok([ECHO("AlwaysReturned", '{"cookie":"0123456789abcdef"}', "0123456789abcdef")]),
        '[{"AlwaysReturned":{"cookie":"0123456789abcdef"}}]',
    )
    add(
        "echo_kept_byte_for_byte",
        ok([ECHO("AlwaysReturned", '{ "cookie" : "b941170a" , "x":[1, 2] }', "b941170a")]),
        '[{"AlwaysReturned":  { "cookie" : "b941170a" , "x":[1, 2] }  }]',
        note="whitespace inside the body is kept; whitespace around it is not part of it",
    )
    add(
        "echo_arbitrary_json_readme_shape",
        ok([ECHO("PleaseAlwaysReturnThisMessage", '["any",{"valid":"JSON"}]', None)]),
        '[{"PleaseAlwaysReturnThisMessage":["any",{"valid":"JSON"}]}]',
        note="the protocol README allows any JSON; it is echoed but is not a telekad cookie",
    )
    add(
        "echo_escaped_string",
        ok([ECHO("PleaseReturnThisMessage", '{"cookie":"a\\"b\\u00e9"}', 'a"b\u00e9')]),
        '[{"PleaseReturnThisMessage":{"cookie":"a\\"b\\u00e9"}}]',
    )
    add(
        "echo_non_string_cookie",
        ok([ECHO("AlwaysReturned", '{"cookie":5}', None)]),
        '[{"AlwaysReturned":{"cookie":5}}]',
    )
    add(
        "echo_null_body",
        ok([ECHO("ReturnedMessage", "null", None)]),
        '[{"ReturnedMessage":null}]',
    )
    add(
        "round_trip_probe_reference_shape",
        ok(
            [
                ECHO("PleaseReturnThisMessage", '{"cookie":"3.108813345"}', "3.108813345"),
                ECHO("ReturnedMessage", '{"cookie":"3.108813345"}', "3.108813345"),
            ]
        ),
        '[{"PleaseReturnThisMessage":{"cookie":"3.108813345"}},'
        '{"ReturnedMessage":{"cookie":"3.108813345"}}]',
    )
    add(
        "round_trip_probe_telekad_nonce",
        ok([ECHO("ReturnedMessage", '{"cookie":"tk.0123456789abcdef"}', "tk.0123456789abcdef")]),
        '[{"ReturnedMessage":{"cookie":"tk.0123456789abcdef"}}]',
    )
    body256 = '{"cookie":"' + "a" * (MAX_ECHO - 13) + '"}'
    body257 = '{"cookie":"' + "a" * (MAX_ECHO - 12) + '"}'
    assert len(body256) == MAX_ECHO and len(body257) == MAX_ECHO + 1
    add(
        "echo_256_bytes_accepted",
        ok([ECHO("PleaseAlwaysReturnThisMessage", body256, "a" * (MAX_ECHO - 13))]),
        '[{"PleaseAlwaysReturnThisMessage":' + body256 + "}]",
    )
    add(
        "echo_257_bytes_refused",
        ok([PSP()], malformed=1),
        '[{"PleaseAlwaysReturnThisMessage":' + body257 + '},{"PleaseSendPeers":{}}]',
    )

    # WhereAreThey.
    add("where_are_they_target", ok([WHERE(ID_TARGET)]), j([{"WhereAreThey": {"target": ID_TARGET}}]))
    add(
        "where_are_they_reference_ed25519h",
        ok([WHERE(ID_ED)]),
        j([{"WhereAreThey": {"ed25519h": ID_ED}}]),
        note="wire-notes.md: the reference node's field name",
    )
    add(
        "where_are_they_target_wins",
        ok([WHERE(ID_TARGET)]),
        j([{"WhereAreThey": {"ed25519h": ID_ED, "target": ID_TARGET}}]),
    )
    add(
        "where_are_they_target_wins_over_bad_ed25519h",
        ok([WHERE(ID_TARGET)]),
        j([{"WhereAreThey": {"target": ID_TARGET, "ed25519h": "not hex"}}]),
    )
    add(
        "where_are_they_null_target_falls_back",
        ok([WHERE(ID_ED)]),
        j([{"WhereAreThey": {"target": None, "ed25519h": ID_ED}}]),
    )
    add(
        "where_are_they_uppercase",
        ok([WHERE(ID_TARGET)]),
        j([{"WhereAreThey": {"target": ID_TARGET.upper()}}]),
    )
    add(
        "where_are_they_escaped_hex",
        ok([WHERE(ZERO)]),
        '[{"WhereAreThey":{"target":"\\u0030' + "0" * 63 + '"}}]',
    )

    # YourAddressIs.
    add("your_address_is_v4", ok([YAI("203.0.113.5:40000")]), '[{"YourAddressIs":{"addr":"203.0.113.5:40000"}}]')
    add(
        "your_address_is_v6",
        ok([YAI("[2001:db8::5]:40000")]),
        '[{"YourAddressIs":{"addr":"[2001:db8:0::5]:40000"}}]',
    )
    add(
        "your_address_is_mapped",
        ok([YAI("203.0.113.5:40000")]),
        '[{"YourAddressIs":{"addr":"[::ffff:203.0.113.5]:40000"}}]',
    )

    # Content messages (decoded only).
    add(
        "please_send_content_full",
        ok([PSC(ID_CONTENT, 8192, 4096)]),
        j([{"PleaseSendContent": {"id": ID_CONTENT, "offset": 8192, "length": 4096}}]),
    )
    add(
        "please_send_content_defaults",
        ok([PSC(ID_CONTENT, 0, BLOCK_SIZE)]),
        j([{"PleaseSendContent": {"id": ID_CONTENT}}]),
        note="offset defaults to 0 and length to 4096",
    )
    add(
        "content_block",
        ok([CONTENT(ID_CONTENT, 0, b"hi", 2)]),
        j([{"Content": {"id": ID_CONTENT, "offset": 0, "base64": "aGk=", "eof": 2}}]),
    )
    add(
        "content_empty_block",
        ok([CONTENT(ID_CONTENT, 4096, b"", 4096)]),
        j([{"Content": {"id": ID_CONTENT, "offset": 4096, "base64": "", "eof": 4096}}]),
    )
    blob = bytes(range(256)) * 2
    add(
        "content_binary_block",
        ok([CONTENT(ID_CONTENT, 512, blob, 100000)]),
        j(
            [
                {
                    "Content": {
                        "id": ID_CONTENT,
                        "offset": 512,
                        "base64": base64.b64encode(blob).decode(),
                        "eof": 100000,
                    }
                }
            ]
        ),
    )
    add(
        "maybe_they_have_some",
        ok([MAYBE(ID_CONTENT, ["192.0.2.1:24254", "[2001:db8::2]:24254"])], bad_addresses=1),
        j(
            [
                {
                    "MaybeTheyHaveSome": {
                        "id": ID_CONTENT,
                        "peers": ["192.0.2.1:24254", "192.0.2.1:0", "[2001:db8::2]:24254"],
                    }
                }
            ]
        ),
    )

    # Announcements and holder queries (telekad's content and topic messages).
    add(
        "maybe_they_have_some_with_holders",
        ok([MAYBE(ID_CONTENT, ["192.0.2.1:24254", "192.0.2.2:24254", "192.0.2.3:24254"], 2,
                  ["players 4/10", "map \u00e9t\u00e9 \"x\""])]),
        j([{"MaybeTheyHaveSome": {
            "id": ID_CONTENT,
            "peers": ["192.0.2.1:24254", "192.0.2.2:24254", "192.0.2.3:24254"],
            "holders": 2, "notes": ["players 4/10", "map \u00e9t\u00e9 \"x\"", "extra"]}}]),
        note="notes past the holders are ignored; notes are JSON strings (escapes allowed)",
    )
    add(
        "maybe_they_have_some_holders_capped",
        ok([MAYBE(ID_CONTENT, ["192.0.2.1:24254"], 1, ["", ""][:1])]),
        j([{"MaybeTheyHaveSome": {"id": ID_CONTENT, "peers": ["192.0.2.1:24254"],
                                  "holders": 9, "notes": [7]}}]),
        note="holders beyond the list are capped; a note that is not a string is empty",
    )
    add("i_have_some", ok([IHAVE(ID_CONTENT, "players 4/10")]),
        j([{"IHaveSome": {"id": ID_CONTENT, "note": "players 4/10"}}]))
    add("i_have_some_no_note", ok([IHAVE(ID_CONTENT)]), j([{"IHaveSome": {"id": ID_CONTENT}}]))
    add(
        "i_have_some_bad",
        ok([], malformed=3),
        j([{"IHaveSome": {"id": ID_CONTENT, "note": "x" * 257}},
           {"IHaveSome": {"id": "../etc"}}, {"IHaveSome": {"note": "x"}}]),
        note="a note over 256 bytes, a bad id or no id make the announcement malformed",
    )
    add("who_has_some", ok([WHO(ID_CONTENT)]), j([{"WhoHasSome": {"id": ID_CONTENT}}]))

    # Supported messages, padding.
    add("please_list_supported_messages", ok([PLSM()]), '[{"PleaseListSupportedMessages":{}}]')
    add(
        "supported_messages_reference_shape",
        ok([SM()]),
        '[{"SupportedMessages":{"schema":{"$schema":"http://json-schema.org/draft-07/schema#",'
        '"title":"Message","oneOf":[{"type":"object","required":["PleaseSendPeers"]}]}}}]',
    )
    add("supported_messages_any_body", ok([SM()]), '[{"SupportedMessages":null}]')
    add(
        "padding_telekad_shape",
        ok([PAD(len('{"p":"000"}'))]),
        '[{"Padding":{"p":"000"}}]',
        note="a received Padding's len is the byte length of its body's JSON text",
    )
    add("padding_any_body", ok([PAD(5)]), '[{"Padding": [1,2] }]')

    # Recognised-and-ignored names, each with a realistic body, and with odd bodies.
    bodies = {
        "MyPublicKey": {"ed25519h": ID_ED},
        "SignedMessage": {"signature": "00" * 64, "base64": "W10="},
        "ChatMessage": {"message": "hi"},
        "GroupChatMessage": {"group": "main", "message": "hi", "id": 7},
        "EncryptedMessages": {"base64": "AAAA", "ed25519h": ID_ED},
        "FastEncryptedMessages": {"base64": "AAAA"},
        "Forward": {"to": ID_ED, "messages": '[{"ChatMessage":{"message":"hi"}}]'},
        "Forwarded": {"src": "192.0.2.1:24254", "messages": "[]", "might_be_ip_spoofing": True},
        "GetLatest": {"ed25519h": ID_ED, "name": "x"},
        "Latest": {"ed25519h": ID_ED, "name": "x", "id": ID_CONTENT},
        "ContentList": {"ids": [ID_CONTENT]},
        "PleaseListContent": {},
        "YouShouldSeeThis": {"id": ID_CONTENT},
        "IJustSawThis": {"id": ID_CONTENT},
        "SignedPub": {"ed25519h": ID_ED},
        "GetPubByEth": {"eth": "00" * 20},
    }
    assert list(bodies) == IGNORED
    for name in IGNORED:
        add("ignored_" + name, ok([IGN(name)]), j([{name: bodies[name]}]))
    add(
        "ignored_names_any_body",
        ok([IGN("ChatMessage"), IGN("Latest"), IGN("MyPublicKey")]),
        '[{"ChatMessage":5},{"Latest":null},{"MyPublicKey":"x"}]',
    )

    # Unknown names.
    add(
        "unknown_names_skipped_and_counted",
        ok([IGN("PleaseListContent"), IGN("YouShouldSeeThis"), PSP()], unknown=4),
        '[{"PleaseListContent":{}},{"YouShouldSeeThis":{"x":1}},{"NoSuchMessage":{}},'
        '{"pleasesendpeers":{}},{"":{}},{"PleaseSendPeers ":{}},{"PleaseSendPeers":{}}]',
        note="names are case- and byte-exact; PleaseListContent and YouShouldSeeThis are "
        "reference-node messages telekad recognises and ignores",
    )

    # Malformed elements.
    add(
        "non_object_elements",
        ok([PSP()], malformed=6),
        '["PleaseSendPeers",1,null,true,[],[{"PleaseSendPeers":{}}],{"PleaseSendPeers":{}}]',
    )
    add("empty_object_element", ok([], malformed=1), "[{}]")
    add(
        "two_keys_in_one_object",
        ok([], malformed=3),
        '[{"PleaseSendPeers":{},"Peers":{"peers":[]}},{"Foo":{},"Bar":{}},'
        '{"PleaseSendPeers":{},"PleaseSendPeers":{}}]',
        note="two keys make an element malformed even when the names are unknown or equal",
    )
    add(
        "escaped_message_name",
        ok([PSP()]),
        '[{"Please\\u0053endPeers":{}}]',
        note="a name with JSON escapes is the same name once unescaped",
    )
    add(
        "empty_body_must_be_object",
        ok([], malformed=3),
        '[{"PleaseSendPeers":null},{"PleaseSendPeers":"x"},{"PleaseListSupportedMessages":7}]',
    )
    add(
        "peers_malformed",
        ok([], malformed=7),
        "["
        + ",".join(
            [
                '{"Peers":{}}',
                '{"Peers":{"peers":"192.0.2.1:1"}}',
                '{"Peers":{"peers":null}}',
                '{"Peers":{"peers":[],"peers":[]}}',
                '{"Peers":{"peers":[],"target":5}}',
                '{"Peers":{"peers":[],"target":"' + ID_TARGET[:62] + '"}}',
                '{"Peers":"192.0.2.1:1"}',
            ]
        )
        + "]",
    )
    add(
        "where_are_they_malformed",
        ok([], malformed=8),
        "["
        + ",".join(
            [
                '{"WhereAreThey":{}}',
                '{"WhereAreThey":{"target":null}}',
                '{"WhereAreThey":{"target":"' + ID_TARGET[:-1] + '"}}',
                '{"WhereAreThey":{"target":"' + ID_TARGET + '0"}}',
                '{"WhereAreThey":{"target":"' + "g" * 64 + '"}}',
                '{"WhereAreThey":{"target":"0x' + ID_TARGET[:62] + '"}}',
                '{"WhereAreThey":{"ed25519h":7}}',
                '{"WhereAreThey":{"target":"' + "\u00e9" * 32 + '"}}',
            ]
        )
        + "]",
        note="ids are exactly 64 hex digits, no prefix; the last one is 64 bytes of non-hex",
    )
    add(
        "your_address_is_malformed",
        ok([], malformed=6),
        "["
        + ",".join(
            [
                '{"YourAddressIs":{}}',
                '{"YourAddressIs":{"addr":"203.0.113.5"}}',
                '{"YourAddressIs":{"addr":"203.0.113.5:0"}}',
                '{"YourAddressIs":{"addr":"0.0.0.0:40000"}}',
                '{"YourAddressIs":{"addr":"host:40000"}}',
                '{"YourAddressIs":{"addr":40000}}',
            ]
        )
        + "]",
        note="an unusable address inside YourAddressIs makes the element malformed "
        "(it is not a peer-list entry)",
    )
    add(
        "content_messages_malformed",
        ok([], malformed=11),
        "["
        + ",".join(
            [
                '{"PleaseSendContent":{}}',
                '{"PleaseSendContent":{"id":"' + ID_CONTENT + '","offset":-1}}',
                '{"PleaseSendContent":{"id":"' + ID_CONTENT + '","offset":1.5}}',
                '{"PleaseSendContent":{"id":"' + ID_CONTENT + '","length":"4096"}}',
                '{"PleaseSendContent":{"id":"../etc/passwd"}}',
                '{"Content":{"id":"' + ID_CONTENT + '","offset":0,"base64":"aGk","eof":2}}',
                '{"Content":{"id":"' + ID_CONTENT + '","offset":0,"base64":"aGk="}}',
                '{"Content":{"id":"' + ID_CONTENT + '","base64":"aGk=","eof":2}}',
                '{"Content":{"id":"' + ID_CONTENT + '","offset":0,"base64":"a Gk=","eof":2}}',
                '{"MaybeTheyHaveSome":{"id":"' + ID_CONTENT + '"}}',
                '{"MaybeTheyHaveSome":{"id":"x","peers":["192.0.2.1:1"]}}',
            ]
        )
        + "]",
    )

    # Mixed packets as real nodes send them.
    add(
        "reference_node_first_reply",
        ok(
            [
                ECHO("PleaseAlwaysReturnThisMessage", '{"cookie":"b941170a"}', "b941170a"),
                PEERS(["148.71.89.128:24254"]),
                PSP(),
                ECHO("PleaseReturnThisMessage", '{"cookie":"3.108813345"}', "3.108813345"),
                IGN("MyPublicKey"),
            ]
        ),
        '[{"PleaseAlwaysReturnThisMessage":{"cookie":"b941170a"}},'
        '{"Peers":{"peers":["148.71.89.128:24254"]}},{"PleaseSendPeers":{}},'
        '{"PleaseReturnThisMessage":{"cookie":"3.108813345"}},'
        '{"MyPublicKey":{"ed25519h":"' + ID_ED + '"}}]',
    )
    add(
        "telekad_lookup_request",
        ok(
            [
                WHERE(ID_TARGET),
                PSP(),
                ECHO("PleaseReturnThisMessage", '{"cookie":"tk.43bd0a27cb68f270"}', "tk.43bd0a27cb68f270"),
                PAD(len('{"p":"' + "0" * 20 + '"}')),
                ECHO("PleaseAlwaysReturnThisMessage", '{"cookie":"0f792f656d23fe63"}', "0f792f656d23fe63"),
            ]
        ),
        '[{"WhereAreThey":{"target":"' + ID_TARGET + '"}},{"PleaseSendPeers":{}},'
        '{"PleaseReturnThisMessage":{"cookie":"tk.43bd0a27cb68f270"}},'
        '{"Padding":{"p":"' + "0" * 20 + '"}},'
        '{"PleaseAlwaysReturnThisMessage":{"cookie":"0f792f656d23fe63"}}]',
    )
    add(
        "telekad_lookup_answer",
        ok(
            [
                ECHO("AlwaysReturned", '{"cookie":"0f792f656d23fe63"}', "0f792f656d23fe63"),
                ECHO("ReturnedMessage", '{"cookie":"tk.43bd0a27cb68f270"}', "tk.43bd0a27cb68f270"),
                PEERS(["192.0.2.10:24254", "[2001:db8::1]:24254"], ID_TARGET),
                YAI("198.51.100.7:24254"),
            ]
        ),
        '[{"AlwaysReturned":{"cookie":"0f792f656d23fe63"}},'
        '{"ReturnedMessage":{"cookie":"tk.43bd0a27cb68f270"}},'
        '{"Peers":{"peers":["192.0.2.10:24254","[2001:db8::1]:24254"],"target":"' + ID_TARGET + '"}},'
        '{"YourAddressIs":{"addr":"198.51.100.7:24254"}}]',
    )
    add(
        "good_unknown_malformed_interleaved_order_kept",
        ok([PSP(), WHERE(ID_TARGET), PSP()], unknown=1, malformed=2),
        '[{"PleaseSendPeers":{}},{"Nope":{}},{"WhereAreThey":{"target":"' + ID_TARGET + '"}},'
        '42,{"Peers":{}},{"PleaseSendPeers":{}}]',
    )
    add("empty_array", ok([]), "[]")
    add("empty_array_with_space", ok([]), "[ ]")

    # Element limit.
    one = '{"PleaseSendPeers":{}}'
    add("exactly_64_elements", ok([PSP()] * 64), "[" + ",".join([one] * 64) + "]")
    add("70_elements", ok([PSP()] * 64, excess=6), "[" + ",".join([one] * 70) + "]")
    mixed = ['{"Nope":{}}'] * 10 + ['"x"'] * 10 + [one] * 44 + ["1", "{}", '{"A":1,"B":2}', "[[[]]]", one]
    add(
        "excess_elements_are_not_inspected",
        ok([PSP()] * 44, unknown=10, malformed=10, excess=5),
        "[" + ",".join(mixed) + "]",
        note="past 64 elements nothing is decoded, only counted; the JSON must still be valid",
    )
    add(
        "excess_invalid_json_drops_datagram",
        dropped("not_array"),
        "[" + ",".join([one] * 64 + ["{"]) + "]",
    )

    # Whole datagrams dropped.
    for name, text in [
        ("empty_datagram", ""),
        ("object_not_array", '{"PleaseSendPeers":{}}'),
        ("string", '"PleaseSendPeers"'),
        ("null", "null"),
        ("number", "42"),
        ("truncated", '[{"PleaseSendPeers":{}}'),
        ("trailing_comma", '[{"PleaseSendPeers":{}},]'),
        ("trailing_data", '[{"PleaseSendPeers":{}}] []'),
        ("two_arrays", "[][]"),
        ("broken_element_breaks_datagram", '[{"PleaseSendPeers":{}},{"Peers":}]'),
        ("single_quotes", "[{'PleaseSendPeers':{}}]"),
        ("comment", '[{"PleaseSendPeers":{}} /* hi */]'),
        ("nan", '[{"ChatMessage":NaN}]'),
        ("unescaped_control_char", '[{"ChatMessage":{"message":"a\tb"}}]'),
    ]:
        add("not_array_" + name, dropped("not_array"), text)
    for name, data in [
        ("utf8_bom", b"\xef\xbb\xbf[]"),
        ("invalid_utf8_in_string", b'[{"ChatMessage":{"message":"\xff"}}]'),
        ("overlong_utf8", b'[{"ChatMessage":{"message":"\xc0\xaf"}}]'),
        ("utf8_surrogate", b'[{"ChatMessage":{"message":"\xed\xa0\x80"}}]'),
        ("utf16le", '[{"PleaseSendPeers":{}}]'.encode("utf-16-le")),
        ("nul_byte", b'[{"PleaseSendPeers":{}}]\x00'),
    ]:
        add("not_array_" + name, dropped("not_array"), hexdata=data.hex())

    # Size limit: trailing spaces are valid JSON whitespace, so only the size decides.
    add(
        "largest_datagram_decoded",
        ok([PSP()]),
        '[{"PleaseSendPeers":{}}]',
        pad_to=MAX_DATAGRAM,
    )
    add(
        "one_byte_too_large",
        dropped("too_large"),
        '[{"PleaseSendPeers":{}}]',
        pad_to=MAX_DATAGRAM + 1,
    )
    add(
        "too_large_checked_before_utf8",
        dropped("too_large"),
        hexdata="ff",
        pad_to=MAX_DATAGRAM + 1,
    )
    deep = 2000
    add(
        "deep_nesting_inside_ignored_body",
        ok([IGN("ChatMessage"), PSP()]),
        '[{"ChatMessage":' + "[" * deep + "]" * deep + '},{"PleaseSendPeers":{"x":' + "[" * deep + "]" * deep + "}}]",
    )
    add(
        "deep_nesting_as_element",
        ok([PSP()], malformed=1),
        "[" + "[" * deep + "]" * deep + ',{"PleaseSendPeers":{}}]',
    )
    return v


# ---------------------------------------------------------------------------------------


def ids():
    addrs = [
        "192.0.2.1:24254",
        "127.0.0.1:24254",
        "1.2.3.4:5",
        "255.255.255.255:65535",
        "0.0.0.0:0",
        "148.71.89.128:24254",
        "159.69.54.127:24254",
        "[2a01:4f8:c013:5bc5::1]:24254",
        "[2001:818:e876:f700:e008:c723:26f1:561f]:24254",
        "[2001:db8::1]:24254",
        "[2001:DB8:0:0:0:0:0:1]:24254",
        "[2001:0db8:0000:0000:0000:0000:0000:0001]:24254",
        "[::1]:24254",
        "[::]:1",
        "[1::]:1",
        "[2001:db8:0:1:1:1:1:1]:1",
        "[2001:0:0:1:0:0:0:1]:1",
        "[2001:db8:0:0:1:0:0:1]:1",
        "[fe80::1%3]:24254",
        "[::1.2.3.4]:5",
        "[::ffff:0:1.2.3.4]:5",
        "[64:ff9b::1.2.3.4]:5",
        "[::ffff:192.0.2.1]:24254",
        "[::FFFF:c000:0201]:24254",
        "[::ffff:127.0.0.1]:24254",
    ]
    out_addrs = []
    for a in addrs:
        c = canonical(a)
        # Cross-check the hand-written formatter with Python's, except for mapped forms.
        ip, _ = split_addr(a)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
            assert v6_text(ip) == ip.compressed, (a, v6_text(ip), ip.compressed)
        out_addrs.append({"addr": a, "canonical": c, "id": sha(c)})
    assert out_addrs[22]["id"] == out_addrs[0]["id"]  # mapped == plain IPv4

    topics = [
        {"topic": "", "id": sha("")},
        {"topic": "Find network game", "id": sha("Find network game")},
        {"topic": "Spiel f\u00fcr alle \U0001f3ae", "id": sha("Spiel f\u00fcr alle \U0001f3ae")},
    ]
    hashes = [
        {"data_hex": "", "id": sha(b"")},
        {"data_hex": b"hi".hex(), "id": sha(b"hi")},
        {"data_hex": bytes(range(256)).hex(), "id": sha(bytes(range(256)))},
    ]

    distances = []

    def dist(a, b, note=None):
        item = {"a": a, "b": b, "distance": xor_hex(a, b), "bucket_index": bucket_index(a, b)}
        d = int(a, 16) ^ int(b, 16)
        item["leading_zeros"] = 256 - d.bit_length()
        if note:
            item["note"] = note
        distances.append(item)

    one = "%064x" % 1
    top = "8" + "0" * 63
    dist(ZERO, ZERO, "equal ids: no bucket")
    dist(ZERO, top, "first bit differs: bucket 0")
    dist(ZERO, one, "only the last bit differs: bucket 255")
    dist("f" * 64, "0" * 64)
    dist(ID_TARGET, ID_TARGET)
    a = node_id("192.0.2.1:24254")
    b = node_id("[2001:db8::1]:24254")
    dist(a, b, "ids of two addresses")
    dist(node_id("127.0.0.1:24254"), node_id("127.0.1.1:24254"))
    base = int(ID_TARGET, 16)
    for i in [0, 1, 7, 8, 9, 100, 200, 254, 255]:
        # Flip bit i (from the top) and scramble every bit below it.
        low_mask = (1 << (255 - i)) - 1
        scramble = int(sha("scramble %d" % i), 16) & low_mask
        other = base ^ (1 << (255 - i)) ^ scramble
        dist(ID_TARGET, "%064x" % other, "common prefix of %d bits" % i)

    # closest(): contacts ordered by XOR distance to a target.
    order = []
    contacts = ["192.0.2.%d:24254" % i for i in range(1, 13)] + [
        "[2001:db8::%x]:24254" % i for i in range(1, 5)
    ]
    for target in [ID_TARGET, node_id("192.0.2.5:24254"), ZERO, "f" * 64]:
        ranked = sorted(contacts, key=lambda c: int(node_id(c), 16) ^ int(target, 16))
        order.append({"target": target, "addrs": contacts, "nearest_first": ranked})

    return {
        "addresses": out_addrs,
        "topics": topics,
        "hashes": hashes,
        "distances": distances,
        "closest_order": order,
    }


# ---------------------------------------------------------------------------------------


def addresses():
    parse = []
    valid = [
        "192.0.2.1:24254",
        "1.1.1.1:1",
        "10.0.0.1:65535",
        "127.0.0.1:24254",
        "169.254.1.1:5",
        "192.0.2.3:00080",
        "[2001:db8::1]:24254",
        "[2001:DB8::A]:1",
        "[::1]:24254",
        "[fe80::1%2]:24254",
        "[::ffff:192.0.2.1]:24254",
        "[0000:0000:0000:0000:0000:0000:0000:0001]:24254",
        "[::ffff:255.255.255.254]:1",
    ]
    invalid = [
        ("192.0.2.1:0", "port 0"),
        ("[2001:db8::1]:0", "port 0"),
        ("0.0.0.0:24254", "unspecified"),
        ("[::]:24254", "unspecified"),
        ("[::ffff:0.0.0.0]:24254", "unspecified after mapping"),
        ("224.0.0.1:24254", "multicast"),
        ("239.255.255.250:1900", "multicast"),
        ("[ff02::1]:24254", "multicast"),
        ("[::ffff:224.0.0.1]:24254", "multicast after mapping"),
        ("255.255.255.255:24254", "broadcast"),
        ("[::ffff:255.255.255.255]:1", "broadcast after mapping"),
        ("192.0.2.1", "no port"),
        ("[2001:db8::1]", "no port"),
        ("2001:db8::1:24254", "IPv6 without brackets"),
        ("[192.0.2.1]:24254", "IPv4 in brackets"),
        ("example.com:24254", "not an IP"),
        ("localhost:24254", "not an IP"),
        ("192.0.2.1:65536", "port too large"),
        ("192.0.2.1:-1", "negative port"),
        ("01.2.3.4:5", "leading zero in an octet"),
        ("1.2.3:5", "three octets"),
        (" 192.0.2.1:1", "leading space"),
        ("192.0.2.1:1\n", "trailing newline"),
        ("", "empty"),
        ("[0000:0000:0000:0000:0000:0000:0000:0001%1]:24254", "longer than 47 bytes"),
        ("udp://192.0.2.1:1", "a URL"),
    ]
    for a in valid:
        parse.append({"text": a, "parsed": canonical(a)})
    for a, why in invalid:
        parse.append({"text": a, "parsed": None, "why": why})

    subnets = [
        ("192.0.2.1", "192.0.2.254", True),
        ("192.0.2.1", "192.0.3.1", False),
        ("10.1.2.3", "10.1.2.200", True),
        ("10.1.2.3", "11.1.2.3", False),
        ("2001:db8:1:2::1", "2001:db8:1:ffff::1", True),
        ("2001:db8:1::1", "2001:db8:2::1", False),
        ("::ffff:192.0.2.1", "192.0.2.77", True),
        ("192.0.2.1", "2001:db8::1", False),
    ]
    return {
        "parse_peer": parse,
        "same_subnet": [{"a": a, "b": b, "same": s} for a, b, s in subnets],
    }


# ---------------------------------------------------------------------------------------


def enc_echo(name, cookie):
    return name, {"cookie": cookie}, '{"%s":{"cookie":"%s"}}' % (name, cookie)


def encode():
    msgs = []

    def add(name, message, text):
        msgs.append({"name": name, "message": message, "text": text})

    add("please_send_peers", PSP(), '{"PleaseSendPeers":{}}')
    add("peers_empty", PEERS([]), '{"Peers":{"peers":[]}}')
    add(
        "peers_without_target",
        PEERS(["192.0.2.10:24254", "[2001:db8::1]:24254", "10.0.0.1:1"]),
        '{"Peers":{"peers":["192.0.2.10:24254","[2001:db8::1]:24254","10.0.0.1:1"]}}',
    )
    add(
        "peers_with_target",
        PEERS(["192.0.2.10:24254"], ID_TARGET),
        '{"Peers":{"peers":["192.0.2.10:24254"],"target":"%s"}}' % ID_TARGET,
    )
    add(
        "peers_written_canonical",
        PEERS(["[::ffff:192.0.2.10]:24254", "[2001:0db8:0:0:0:0:0:1]:5"]),
        '{"Peers":{"peers":["192.0.2.10:24254","[2001:db8::1]:5"]}}',
    )
    add(
        "where_are_they",
        WHERE(ID_TARGET),
        '{"WhereAreThey":{"target":"%s"}}' % ID_TARGET,
    )
    add(
        "your_address_is_v4",
        YAI("198.51.100.7:24254"),
        '{"YourAddressIs":{"addr":"198.51.100.7:24254"}}',
    )
    add(
        "your_address_is_v6",
        YAI("[2001:db8::7]:24254"),
        '{"YourAddressIs":{"addr":"[2001:db8::7]:24254"}}',
    )
    for name, cookie in [
        ("PleaseAlwaysReturnThisMessage", "0f792f656d23fe63"),
        ("AlwaysReturned", "b941170a"),
        ("PleaseReturnThisMessage", "tk.0123456789abcdef"),
        ("ReturnedMessage", "3.108813345"),
    ]:
        n, m, t = enc_echo(name, cookie)
        add("echo_" + n, {n: m}, t)
    add(
        "please_send_content",
        PSC(ID_CONTENT, 4096, 4096),
        '{"PleaseSendContent":{"id":"%s","offset":4096,"length":4096}}' % ID_CONTENT,
    )
    add(
        "content",
        CONTENT(ID_CONTENT, 0, b"hi", 2),
        '{"Content":{"id":"%s","offset":0,"base64":"aGk=","eof":2}}' % ID_CONTENT,
    )
    add(
        "content_binary",
        CONTENT(ID_CONTENT, 8192, bytes(range(250, 256)) + b"\x00", 9000),
        '{"Content":{"id":"%s","offset":8192,"base64":"%s","eof":9000}}'
        % (ID_CONTENT, base64.b64encode(bytes(range(250, 256)) + b"\x00").decode()),
    )
    add(
        "maybe_they_have_some",
        MAYBE(ID_CONTENT, ["192.0.2.1:24254", "[2001:db8::2]:24254"]),
        '{"MaybeTheyHaveSome":{"id":"%s","peers":["192.0.2.1:24254","[2001:db8::2]:24254"]}}'
        % ID_CONTENT,
    )
    add(
        "maybe_they_have_some_with_holders",
        MAYBE(ID_CONTENT, ["192.0.2.1:24254", "192.0.2.2:24254"], 1, ["players \"4\"/10"]),
        '{"MaybeTheyHaveSome":{"id":"%s","peers":["192.0.2.1:24254","192.0.2.2:24254"],'
        '"holders":1,"notes":["players \\"4\\"/10"]}}' % ID_CONTENT,
    )
    add("i_have_some", IHAVE(ID_CONTENT, "map: dust"),
        '{"IHaveSome":{"id":"%s","note":"map: dust"}}' % ID_CONTENT)
    add("i_have_some_no_note", IHAVE(ID_CONTENT), '{"IHaveSome":{"id":"%s"}}' % ID_CONTENT)
    add("who_has_some", WHO(ID_CONTENT), '{"WhoHasSome":{"id":"%s"}}' % ID_CONTENT)
    add("please_list_supported_messages", PLSM(), '{"PleaseListSupportedMessages":{}}')
    add(
        "supported_messages",
        SM(),
        '{"SupportedMessages":{"schema":{"messages":%s}}}' % j(SUPPORTED),
    )
    add("padding", PAD(5), '{"Padding":{"p":"00000"}}')
    add("padding_empty", PAD(0), '{"Padding":{"p":""}}')
    add("ignored_written_with_empty_body", IGN("ChatMessage"), '{"ChatMessage":{}}')

    packets = [
        {"name": "empty_packet", "messages": [], "text": "[]"},
        {
            "name": "lookup_request_to_plain_cjp2p_node",
            "messages": [
                WHERE(ID_TARGET),
                PSP(),
                {"PleaseReturnThisMessage": {"cookie": "tk.43bd0a27cb68f270"}},
                {"AlwaysReturned": {"cookie": "b941170a"}},
            ],
            "text": '[{"WhereAreThey":{"target":"%s"}},{"PleaseSendPeers":{}},'
            '{"PleaseReturnThisMessage":{"cookie":"tk.43bd0a27cb68f270"}},'
            '{"AlwaysReturned":{"cookie":"b941170a"}}]' % ID_TARGET,
        },
        {
            "name": "lookup_answer",
            "messages": [
                {"AlwaysReturned": {"cookie": "0f792f656d23fe63"}},
                {"ReturnedMessage": {"cookie": "tk.43bd0a27cb68f270"}},
                PEERS(["192.0.2.10:24254"], ID_TARGET),
                YAI("198.51.100.7:24254"),
            ],
            "text": '[{"AlwaysReturned":{"cookie":"0f792f656d23fe63"}},'
            '{"ReturnedMessage":{"cookie":"tk.43bd0a27cb68f270"}},'
            '{"Peers":{"peers":["192.0.2.10:24254"],"target":"%s"}},'
            '{"YourAddressIs":{"addr":"198.51.100.7:24254"}}]' % ID_TARGET,
        },
    ]

    # PacketWriter: a model of the byte budget (spec/wire.md "Building a datagram").
    def text_of(m):
        for item in msgs:
            if item["message"] == m:
                return item["text"]
        raise KeyError(m)

    def peers_text(peers, target):
        body = '{"Peers":{"peers":[%s]' % ",".join('"%s"' % canonical(p) for p in peers)
        if target:
            body += ',"target":"%s"' % target
        return body + "}}"

    writers = []

    def writer(name, limit, ops):
        cap = min(limit, MAX_DATAGRAM)
        buf, count = "[", 0
        out_ops = []
        for op in ops:
            room = cap - (len(buf) + (1 if count else 0) + 1)
            if "push" in op:
                t = text_of(op["push"])
                fits = len(t) <= room
                if fits:
                    buf += ("," if count else "") + t
                    count += 1
                out_ops.append({"push": op["push"], "ok": fits})
            else:
                p = op["push_peers"]
                n = 0
                while n < len(p["peers"]) and len(peers_text(p["peers"][: n + 1], p["target"])) <= room:
                    n += 1
                if n < p["min"] or len(peers_text(p["peers"][:n], p["target"])) > room:
                    written = None
                else:
                    written = n
                    buf += ("," if count else "") + peers_text(p["peers"][:n], p["target"])
                    count += 1
                out_ops.append({"push_peers": p, "written": written})
        finish = buf + "]" if count else None
        assert finish is None or len(finish) <= cap
        writers.append({"name": name, "limit": limit, "ops": out_ops, "finish": finish})

    psp_len = len('[{"PleaseSendPeers":{}}]')
    writer("exact_fit", psp_len, [{"push": PSP()}])
    writer("one_byte_short", psp_len - 1, [{"push": PSP()}])
    writer(
        "second_message_refused_third_fits",
        psp_len + 1 + len('{"PleaseListSupportedMessages":{}}') - 1,
        [{"push": PSP()}, {"push": PLSM()}, {"push": PEERS([])}],
    )
    four = ["192.0.2.1:24254", "[2001:db8::1]:24254", "192.0.2.3:24254", "192.0.2.4:24254"]
    for extra in [0, 10, 20, 40, 80]:
        base = len("[" + peers_text([], ID_TARGET) + "]")
        writer(
            "peers_trimmed_to_fit_%d" % extra,
            base + extra,
            [{"push_peers": {"peers": four, "target": ID_TARGET, "min": 0}}],
        )
    writer(
        "peers_minimum_not_met",
        len('[{"Peers":{"peers":["192.0.2.1:24254"]}}]'),
        [{"push_peers": {"peers": four, "target": None, "min": 2}}, {"push": PSP()}],
    )
    writer(
        "limit_above_max_datagram_is_clamped",
        10 ** 9,
        [{"push": PSP()}, {"push_peers": {"peers": four, "target": None, "min": 4}}],
    )
    writer("nothing_written", 100, [])

    amplification = [
        {"request_len": n, "limit": 2 * (n + HEADER_OVERHEAD) - HEADER_OVERHEAD}
        for n in [0, 1, 24, 100, 602, 1000, 65507]
    ]
    return {"messages": msgs, "packets": packets, "writer": writers, "amplification": amplification}


# ---------------------------------------------------------------------------------------


def state_file(body_text, version=1, checksum=None):
    if checksum is None:
        checksum = sha(body_text)
    return '{"version":%d,"checksum":"%s","body":%s}\n' % (version, checksum, body_text)


def state():
    enc = []

    def e(name, st, body):
        enc.append({"name": name, "state": st, "text": state_file(body)})

    e("empty", {"public_addr": None, "contacts": []}, '{"public_addr":null,"contacts":[]}')
    e(
        "contacts",
        {
            "public_addr": "192.0.2.1:24254",
            "contacts": [
                {"addr": "127.0.0.2:5", "rtt_us": 1500},
                {"addr": "[::1]:7", "rtt_us": None},
                {"addr": "[2001:db8::1]:24254", "rtt_us": 0},
            ],
        },
        '{"public_addr":"192.0.2.1:24254","contacts":[{"addr":"127.0.0.2:5","rtt_us":1500},'
        '{"addr":"[::1]:7"},{"addr":"[2001:db8::1]:24254","rtt_us":0}]}',
    )

    dec = []

    def d(name, data, expect):
        item = {"name": name}
        if isinstance(data, bytes):
            item["hex"] = data.hex()
        else:
            item["text"] = data
        item["expect"] = expect
        dec.append(item)

    pretty = '{\n  "contacts": [ {"addr": "192.0.2.9:24254", "rtt_us": 250000, "x": 1} ],\n  "public_addr": null,\n  "future_field": true\n}'
    d(
        "pretty_body_checksummed_as_written",
        '{"checksum": "%s", "version": 1, "extra": 5, "body": %s}' % (sha(pretty), pretty),
        {"state": {"public_addr": None, "contacts": [{"addr": "192.0.2.9:24254", "rtt_us": 250000}]}},
    )
    body = '{"public_addr":null,"contacts":[{"addr":"192.0.2.9:24254"}]}'
    good = {"state": {"public_addr": None, "contacts": [{"addr": "192.0.2.9:24254", "rtt_us": None}]}}
    d("valid", state_file(body), good)
    d("valid_without_newline", state_file(body).rstrip("\n"), good)
    d(
        "checksum_mismatch",
        state_file(body.replace("9:", "8:"), checksum=sha(body)),
        {"error": "corrupt"},
    )
    d("checksum_uppercase", state_file(body, checksum=sha(body).upper()), {"error": "corrupt"})
    d(
        "checksum_of_reformatted_body",
        state_file(body.replace(",", ", "), checksum=sha(body)),
        {"error": "corrupt"},
    )
    d("future_version", state_file(body, version=2), {"error": "future_version", "version": 2})
    d(
        "future_version_other_shape",
        '{"version":7,"data":"whatever a later telekad writes"}',
        {"error": "future_version", "version": 7},
    )
    d("version_zero", state_file(body, version=0), {"error": "corrupt"})
    d("no_version", '{"checksum":"%s","body":%s}' % (sha(body), body), {"error": "corrupt"})
    d("no_body", '{"version":1,"checksum":"%s"}' % sha(body), {"error": "corrupt"})
    bad_addr = '{"public_addr":null,"contacts":[{"addr":"not an address"}]}'
    d("bad_contact_address", state_file(bad_addr), {"error": "corrupt"})
    d("truncated", state_file(body)[:40], {"error": "corrupt"})
    d("empty_file", "", {"error": "corrupt"})
    d("not_utf8", b"\xff\xfe{}", {"error": "corrupt"})
    d("not_json", "state", {"error": "corrupt"})
    return {"encode": enc, "decode": dec}


# ---------------------------------------------------------------------------------------


def defaults():
    return {
        "config": {
            "table.k": 20,
            "table.replacements": 4,
            "table.max_per_ip": 2,
            "table.max_per_subnet": 8,
            "table.max_failures": 3,
            "lookup.k": 20,
            "lookup.alpha": 3,
            "lookup.deadline_ms": 10000,
            "lookup.min_timeout_ms": 250,
            "lookup.max_timeout_ms": 2000,
            "lookup.max_from_answer": 64,
            "lookup.attempts": 4,
            "lookup.max_per_ip": 2,
            "lookup.max_per_subnet": 8,
            "refresh_interval_ms": 15 * 60 * 1000,
            "bootstrap_retry_ms": 5 * 60 * 1000,
            "cookie_rotation_ms": 10 * 60 * 1000,
            "tick_ms": 1000,
            "ping_interval_ms": 10 * 60 * 1000,
            "evict_check_after_ms": 60 * 1000,
            "initial_timeout_ms": 1000,
            "max_candidates": 512,
            "max_pings_in_flight": 32,
            "max_requests_in_flight": 1024,
            "max_peer_book": 64,
            "max_lookups": 64,
            "first_contact_padding": 640,
            "address_quorum": 3,
            "rate_limit.per_ip.rate": 500,
            "rate_limit.per_ip.burst": 1000,
            "rate_limit.global.rate": 50000,
            "rate_limit.global.burst": 10000,
            "rate_limit.blocks_per_ip.rate": 100000,
            "rate_limit.blocks_per_ip.burst": 4096,
            "rate_limit.max_sources": 4096,
        },
        "wire": {
            "MAX_DATAGRAM": MAX_DATAGRAM,
            "MAX_MESSAGES": MAX_MESSAGES,
            "MAX_ECHO": MAX_ECHO,
            "MAX_PEERS": MAX_PEERS,
            "HEADER_OVERHEAD": HEADER_OVERHEAD,
            "BLOCK_SIZE": BLOCK_SIZE,
            "COOKIE_HEX": COOKIE_HEX,
            "MAX_ADDR_TEXT": MAX_ADDR_TEXT,
            "STATE_VERSION": 1,
            "STATE_FILE": "state.json",
        },
        "ignored_messages": IGNORED,
        "supported_messages": SUPPORTED,
    }


# ---------------------------------------------------------------------------------------
# Engine scenarios: datagrams in, datagrams out (no sockets). Replies are predicted with a
# model of spec/wire.md "Replies" written here; random values (cookies, nonces) appear in
# the templates as $cookie:NAME$ and $nonce:NAME$ (see README.md).

COOKIE_LEN = 16
NONCE_LEN = 3 + 16


class Node:
    """What a fresh telekad node at `local` does with the scenario's packets."""

    def __init__(self, local):
        self.local = local
        self.public = local
        self.table = []  # canonical addresses of verified contacts
        self.pending = set()  # addresses with a ping of ours in flight
        self.their_cookie = {}  # address -> the echo body it asked us to return
        self.var_count = 0

    def fresh(self, kind):
        self.var_count += 1
        return "%s%d" % (kind[0].upper(), self.var_count)

    def own_id(self):
        return node_id(self.public)

    def admits(self, addr):
        ip = ip_of(addr)
        same_ip = sum(1 for c in self.table if ip_of(c) == ip)
        net = subnet_of(ip)
        same_net = sum(1 for c in self.table if subnet_of(ip_of(c)) == net)
        return same_ip < 2 and same_net < 8 and addr != self.public

    def closest(self, target, exclude):
        ranked = sorted(self.table, key=lambda c: int(node_id(c), 16) ^ int(target, 16))
        return [c for c in ranked if c != exclude][:MAX_PEERS]


def ip_of(addr):
    ip = split_addr(addr)[0]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def subnet_of(ip):
    if isinstance(ip, ipaddress.IPv4Address):
        return ipaddress.ip_network("%s/24" % ip, strict=False)
    return ipaddress.ip_network("%s/48" % ip, strict=False)


def real_len(text):
    """Length of a datagram template once its placeholders are filled in."""
    out, i = 0, 0
    while i < len(text):
        if text[i] == "$":
            k = text.index("$", i + 1)
            kind = text[i + 1 : k].split(":", 1)[0]
            out += {"cookie": COOKIE_LEN, "nonce": NONCE_LEN}[kind]
            i = k + 1
        else:
            out += 1
            i += 1
    return out


def engine():
    scenarios = []

    def scenario(name, local, steps, note=None):
        s = {"name": name, "local": local, "seed": 7}
        if note:
            s["note"] = note
        s["steps"] = steps
        scenarios.append(s)

    def reply(node, src, request_len, *, verified, current, echoes=(), where=None,
              peers=False, supported=False, cookie_var=None, content=None):
        """The datagram a telekad node sends back (spec/wire.md "Replies"), as a template,
        with the names of the cookie and ping placeholders it uses."""
        limit = MAX_DATAGRAM if verified else 2 * (request_len + HEADER_OVERHEAD) - HEADER_OVERHEAD
        limit = min(limit, MAX_DATAGRAM)
        parts = []
        size = 1  # the opening "["
        trimmed = False

        def room():
            return limit - (size + (1 if parts else 0) + 1)

        def push(template, length):
            nonlocal size
            if length <= room():
                size += (1 if parts else 0) + length
                parts.append(template)
                return True
            return False

        var = None
        if not current:
            var = cookie_var or node.fresh("cookie")
            t = '{"PleaseAlwaysReturnThisMessage":{"cookie":"$cookie:%s$"}}' % var
            trimmed |= not push(t, real_len(t))
        if src in node.their_cookie:
            t = '{"AlwaysReturned":%s}' % node.their_cookie[src]
            trimmed |= not push(t, len(t))
        for e in echoes:
            t = '{"ReturnedMessage":%s}' % e
            trimmed |= not push(t, len(t))
        if content is not None:
            lst = node.closest(content, src)
            best, n = None, 0
            for k in range(len(lst) + 1):
                body = '{"MaybeTheyHaveSome":{"id":"%s","peers":[%s]}}' % (
                    content, ",".join('"%s"' % c for c in lst[:k]))
                if len(body) > room():
                    break
                best, n = body, k
            if best is None:
                trimmed = True
            else:
                push(best, len(best))
                trimmed |= n < len(lst)
        if where is not None or peers:
            target = where if where is not None else node_id(src)
            lst = node.closest(target, src)
            best, n = None, 0
            for k in range(len(lst) + 1):
                body = '{"Peers":{"peers":[%s]' % ",".join('"%s"' % c for c in lst[:k])
                if where is not None:
                    body += ',"target":"%s"' % where
                body += "}}"
                if len(body) > room():
                    break
                best, n = body, k
            if best is None:
                trimmed = True
            else:
                push(best, len(best))
                trimmed |= n < len(lst)
        if supported:
            t = '{"SupportedMessages":{"schema":{"messages":%s}}}' % j(SUPPORTED)
            trimmed |= not push(t, len(t))
        if not trimmed and echoes:
            # Only an answer to a nonce counts as an address report (wire.md §3.6).
            t = '{"YourAddressIs":{"addr":"%s"}}' % src
            push(t, len(t))
        ping_var = None
        if src not in node.table and src not in node.pending and node.admits(src):
            nv = node.fresh("nonce")
            t = '{"PleaseReturnThisMessage":{"cookie":"$nonce:%s$"}}' % nv
            if push(t, real_len(t)):
                ping_var = nv
                node.pending.add(src)
        assert parts
        return {"to": src, "text": "[" + ",".join(parts) + "]"}, var, ping_var

    def answered(node, addr):
        node.table.append(addr)
        node.pending.discard(addr)

    # Scenario 1: cookies, the amplification limit, nonces, with an almost empty table.
    n = Node("198.51.100.1:24254")
    steps = []
    a, b, c, d = "192.0.2.7:5000", "192.0.2.7:5001", "192.0.2.8:5000", "192.0.2.7:5002"
    req = '[{"PleaseSendPeers":{}}]'
    out, c1, _ = reply(n, a, real_len(req), verified=False, current=False, peers=True)
    assert out["text"] == '[{"PleaseAlwaysReturnThisMessage":{"cookie":"$cookie:%s$"}}]' % c1
    steps.append({
        "note": "a 24-byte request from an unverified source may get at most 76 bytes back: "
        "our cookie fits, an empty Peers after it would not",
        "from": a, "text": req, "sent": [out], "stats": {"replies_trimmed": 1},
    })
    req = '[{"PleaseSendPeers":{}},{"AlwaysReturned":{"cookie":"$cookie:%s$"}}]' % c1
    out, _, p1 = reply(n, a, real_len(req), verified=True, current=True, peers=True)
    steps.append({
        "note": "the source returns our cookie: verified, a full answer and our ping",
        "from": a, "text": req, "sent": [out],
    })
    out, _, p2 = reply(n, b, real_len(req), verified=True, current=True, peers=True)
    steps.append({
        "note": "a cookie covers every port of its IP",
        "from": b, "text": req, "sent": [out],
    })
    out, _, _ = reply(n, c, real_len(req), verified=False, current=False, peers=True)
    steps.append({
        "note": "another IP presenting that cookie is not verified and gets a cookie of its own",
        "from": c, "text": req, "sent": [out], "stats": {"cookie_invalid": 1},
    })
    req = '[{"PleaseSendPeers":{}},{"AlwaysReturned":{"cookie":"0123456789abcdef"}}]'
    out, _, _ = reply(n, a, real_len(req), verified=False, current=False, peers=True, cookie_var=c1)
    steps.append({
        "note": "a wrong cookie is not verified; the same cookie as before is issued again",
        "from": a, "text": req, "sent": [out], "stats": {"cookie_invalid": 2},
    })
    steps.append({
        "note": "our ping to :5000 answered from :5001 does not count",
        "from": b, "text": '[{"ReturnedMessage":{"cookie":"$nonce:%s$"}}]' % p1, "sent": [],
        "table": [], "stats": {"unsolicited": 1},
    })
    steps.append({
        "note": "answered from the address it went to: the source becomes a contact",
        "from": a, "text": '[{"ReturnedMessage":{"cookie":"$nonce:%s$"}}]' % p1, "sent": [],
        "table": [a],
    })
    answered(n, a)
    steps.append({
        "note": "a nonce is good for one answer",
        "from": a, "text": '[{"ReturnedMessage":{"cookie":"$nonce:%s$"}}]' % p1, "sent": [],
        "table": [a], "stats": {"unsolicited": 2},
    })
    steps.append({
        "note": "the second port answers its own ping: two contacts on one IP (the cap)",
        "from": b, "text": '[{"ReturnedMessage":{"cookie":"$nonce:%s$"}}]' % p2, "sent": [],
        "table": sorted([a, b]),
    })
    answered(n, b)
    req = '[{"PleaseSendPeers":{}},{"AlwaysReturned":{"cookie":"$cookie:%s$"}}]' % c1
    out, _, _ = reply(n, d, real_len(req), verified=True, current=True, peers=True)
    steps.append({
        "note": "a third port of that IP is over the per-IP cap of 2: it gets the contacts "
        "closest to its own id, but no ping, since it could not join the table",
        "from": d, "text": req, "sent": [out],
    })
    scenario("cookies_and_amplification", n.local, steps)

    # Scenario 2: first-contact shapes, and packets that get no reply.
    n = Node("198.51.100.1:24254")
    steps = []
    src = "203.0.113.9:24254"
    padded = (
        '[{"PleaseSendPeers":{}},{"PleaseReturnThisMessage":{"cookie":"tk.0123456789abcdef"}},'
        '{"Padding":{"p":"' + "0" * 400 + '"}},'
        '{"PleaseAlwaysReturnThisMessage":{"cookie":"fedcba9876543210"}}]'
    )
    n.their_cookie[src] = '{"cookie":"fedcba9876543210"}'
    out, _, _ = reply(n, src, real_len(padded), verified=False, current=False,
                      echoes=['{"cookie":"tk.0123456789abcdef"}'], peers=True)
    steps.append({
        "note": "a padded first-contact request (telekad's own shape) gets a full answer: our "
        "cookie, theirs, the echo, Peers, YourAddressIs and our ping",
        "from": src, "text": padded, "sent": [out],
    })
    src = "203.0.114.9:24254"
    small = (
        '[{"PleaseSendPeers":{}},{"PleaseReturnThisMessage":{"cookie":"3.108813345"}},'
        '{"PleaseAlwaysReturnThisMessage":{"cookie":"b941170a"}}]'
    )
    n.their_cookie[src] = '{"cookie":"b941170a"}'
    out, _, _ = reply(n, src, real_len(small), verified=False, current=False,
                      echoes=['{"cookie":"3.108813345"}'], peers=True)
    steps.append({
        "note": "a request the size the reference node sends (133 bytes, limit 294 bytes): "
        "the whole answer fits",
        "from": src, "text": small, "sent": [out],
    })
    src = "[2001:db8:ffff:ffff:ffff:ffff:ffff:fff1]:24254"
    smaller = '[{"PleaseSendPeers":{}},{"PleaseReturnThisMessage":{"cookie":"3.108813345"}}]'
    out, _, _ = reply(n, src, real_len(smaller), verified=False, current=False,
                      echoes=['{"cookie":"3.108813345"}'], peers=True)
    assert "YourAddressIs" not in out["text"] and "PleaseReturnThisMessage" not in out["text"]
    steps.append({
        "note": "77 bytes in, at most 182 out: the cookie, the echo and Peers fit; "
        "YourAddressIs and our ping are left out",
        "from": src, "text": smaller, "sent": [out],
    })
    src = "203.0.114.11:24254"
    lsm = '[{"PleaseListSupportedMessages":{}}]'
    out, _, _ = reply(n, src, real_len(lsm), verified=False, current=False, supported=True)
    assert "SupportedMessages" not in out["text"]
    steps.append({
        "note": "36 bytes in, at most 100 out: only our cookie; the long SupportedMessages "
        "answer waits until the source has returned it",
        "from": src, "text": lsm, "sent": [out],
    })
    src = "203.0.115.9:24254"
    both = ('[{"WhereAreThey":{"ed25519h":"%s"}},{"PleaseSendPeers":{}},'
            '{"PleaseListSupportedMessages":{}}]' % ID_ED)
    out, _, _ = reply(n, src, 1000, verified=False, current=False, where=ID_ED, peers=True,
                      supported=True)
    steps.append({
        "note": "WhereAreThey and PleaseSendPeers in one packet get one Peers, naming the "
        "target (padded to 1000 bytes so everything fits)",
        "from": src, "text": both, "pad_to": 1000, "sent": [out],
    })
    src = "203.0.117.9:24254"
    content = '[{"PleaseSendContent":{"id":"%s","offset":0,"length":4096}}]' % ID_CONTENT
    out, _, _ = reply(n, src, 600, verified=False, current=False, content=ID_CONTENT)
    steps.append({
        "note": "content this node does not hold: MaybeTheyHaveSome with its closest contacts",
        "from": src, "text": content, "pad_to": 600, "sent": [out],
    })
    quiet = "203.0.116.9:24254"
    for what, text, stat in [
        ("a Peers answer nobody asked for", '[{"Peers":{"peers":["192.0.2.1:1"]}}]',
         {"unsolicited": 1}),
        ("housekeeping only", '[{"AlwaysReturned":{"cookie":"0123456789abcdef"}}]',
         {"cookie_invalid": 1}),
        ("a datagram that is not an array", '{"PleaseSendPeers":{}}', {"dropped_not_array": 1}),
        ("a datagram with nothing understood", '[{"Nope":{}},{"PleaseSendPeers":7}]',
         {"dropped_empty": 1, "skipped_unknown": 1, "skipped_malformed": 1}),
        ("an oversized echo", '[{"PleaseReturnThisMessage":{"cookie":"%s"}}]' % ("x" * 300),
         {"dropped_empty": 2, "skipped_malformed": 2}),
    ]:
        steps.append({"note": "no reply to " + what, "from": quiet, "text": text, "sent": [],
                      "stats": stat})
    steps.append({
        "note": "no reply to a datagram over 65507 bytes",
        "from": quiet, "text": '[{"PleaseSendPeers":{}}]', "pad_to": MAX_DATAGRAM + 1,
        "sent": [], "stats": {"dropped_too_large": 1},
    })
    steps.append({
        "note": "nothing is answered to our own address",
        "from": n.local, "text": '[{"PleaseSendPeers":{}}]', "sent": [],
    })
    scenario("first_contact", n.local, steps)

    # Scenario 3: answers from a table of ten contacts.
    n = Node("198.51.100.1:24254")
    steps = []
    contacts = ["192.0.%d.1:24254" % i for i in range(1, 8)] + [
        "[2001:db8:%x::1]:24254" % i for i in range(1, 4)
    ]
    for addr in contacts:
        req = '[{"PleaseReturnThisMessage":{"cookie":"hello"}}]'
        out, _, ping = reply(n, addr, 600, verified=False, current=False,
                             echoes=['{"cookie":"hello"}'])
        assert ping is not None
        steps.append({"from": addr, "text": req, "pad_to": 600, "sent": [out]})
        steps.append({
            "from": addr, "text": '[{"ReturnedMessage":{"cookie":"$nonce:%s$"}}]' % ping,
            "sent": [],
        })
        answered(n, addr)
    steps[-1]["table"] = sorted(contacts)
    asker = "203.0.113.50:24254"
    q = '[{"WhereAreThey":{"target":"%s"}}]' % ID_TARGET
    out, _, _ = reply(n, asker, real_len(q), verified=False, current=False, where=ID_TARGET)
    steps.append({
        "note": "unverified and small: the list is cut to what fits, nearest first, and "
        "YourAddressIs is left out",
        "from": asker, "text": q, "sent": [out],
    })
    out, _, _ = reply(n, asker, 900, verified=False, current=False, where=ID_TARGET)
    steps.append({
        "note": "the same question padded to 900 bytes: every contact, nearest first",
        "from": asker, "text": q, "pad_to": 900, "sent": [out],
    })
    member = contacts[0]
    out, _, _ = reply(n, member, 600, verified=False, current=False, peers=True)
    steps.append({
        "note": "PleaseSendPeers: the contacts closest to the asker's own id, without the asker",
        "from": member, "text": '[{"PleaseSendPeers":{}}]', "pad_to": 600, "sent": [out],
    })
    scenario("answers_from_a_table", n.local, steps)

    # Scenario 4: learning the public address.
    n = Node("10.0.0.1:24254")
    steps = []
    seen_as = "203.0.113.77:24254"
    for ip in ["192.0.2.1", "192.0.2.2", "198.51.100.3", "198.51.100.4"]:
        steps.append({
            "note": "a YourAddressIs in a packet that answers none of our nonces is not counted",
            "from": ip + ":24254",
            "text": '[{"YourAddressIs":{"addr":"%s"}}]' % seen_as,
            "sent": [],
            "public_addr": n.local,
            "id": node_id(n.local),
        })

    def report(reporter, addr, adopted_after, note):
        req = '[{"PleaseReturnThisMessage":{"cookie":"x"}}]'
        out, _, ping = reply(n, reporter, 600, verified=False, current=False,
                             echoes=['{"cookie":"x"}'])
        assert ping is not None
        steps.append({"from": reporter, "text": req, "pad_to": 600, "sent": [out]})
        steps.append({
            "note": note,
            "from": reporter,
            "text": '[{"ReturnedMessage":{"cookie":"$nonce:%s$"}},{"YourAddressIs":{"addr":"%s"}}]'
            % (ping, addr),
            "sent": [],
            "public_addr": adopted_after,
            "id": node_id(adopted_after),
        })
        answered(n, reporter)

    reporters = ["192.0.2.1:24254", "198.51.100.3:24254", "203.0.113.200:24254"]
    report(reporters[0], seen_as, n.local, "proven report 1: not yet a quorum of 3")
    report(reporters[1], seen_as, n.local, "proven report 2: not yet a quorum of 3")
    report(reporters[2], seen_as, seen_as, "proven report 3: adopted, the node id changes")
    steps[-1]["stats"] = {"address_changes": 1}
    steps[-1]["table"] = sorted(reporters)
    n.public = seen_as
    for i in range(4):
        report(
            "[2001:db8:%x::9]:24254" % (i + 10),
            "[2001:db8::1]:24254",
            seen_as,
            "IPv6 report %d: %s" % (
                i + 1,
                "a majority (4 of 7) agrees, but an IPv4 node never adopts an IPv6 address"
                if i == 3 else "no majority",
            ),
        )
    steps[-1]["stats"] = {"address_changes": 1}
    scenario("public_address_learning", n.local, steps)

    return scenarios


# ---------------------------------------------------------------------------------------


def write(name, data):
    path = os.path.join(HERE, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")


def main():
    write("packets.json", packets())
    write("ids.json", ids())
    write("addresses.json", addresses())
    write("encode.json", encode())
    write("state.json", state())
    write("defaults.json", defaults())
    write("engine.json", engine())


if __name__ == "__main__":
    main()
