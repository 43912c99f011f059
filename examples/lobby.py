#!/usr/bin/env python3
"""A game lobby through a local telekad node's HTTP API (standard library only).

Start a node with the API on loopback, e.g.
    telekad run --bootstrap 192.0.2.1:24254 --http 127.0.0.1:24255
then, from the game server:
    python3 examples/lobby.py --api http://127.0.0.1:24255 serve "Red room" --players 3
and from a player's machine (its own node):
    python3 examples/lobby.py --api http://127.0.0.1:24255 list

`serve` announces the node under the topic with a JSON note; the node repeats the
announcement while it runs. `list` prints the servers other nodes announced.
"""

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


def call(api, method, path, body=None):
    """Sends one request to the node's API and returns the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(api.rstrip("/") + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    # The API is on loopback: never go through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=30) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # the API answers errors as {"error": "..."}
        try:
            msg = json.load(e).get("error", "")
        except ValueError:
            msg = ""
        sys.exit(f"lobby: error: {method} {path}: HTTP {e.code}: {msg or e.reason}")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        sys.exit(
            f"lobby: error: cannot reach the node's API at {api} ({reason}); "
            "is `telekad run --http ADDR` running there?"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--api", default="http://127.0.0.1:24255", help="the node's HTTP API")
    p.add_argument("--topic", default="mygame/lobby", help="the lobby's topic")
    sub = p.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="announce this node as a game server")
    serve.add_argument("name", help="the room's name players see")
    serve.add_argument("--players", type=int, default=0)
    sub.add_parser("list", help="list the game servers announced under the topic")
    a = p.parse_args()

    if a.cmd == "serve":
        note = json.dumps({"name": a.name, "players": a.players}, separators=(",", ":"))
        r = call(a.api, "POST", "/api/announce", {"topic": a.topic, "note": note})
        print(f"announced under {r['topic']!r} ({r['key']}): {r['note']}")
    else:
        r = call(a.api, "GET", "/api/topics/" + urllib.parse.quote(a.topic, safe=""))
        servers = r["announcers"]
        print(f"{len(servers)} server(s) under {r['topic']!r}:")
        for s in servers:
            rtt = "no answer" if s["rtt_ms"] is None else f"{s['rtt_ms']:.2f} ms"
            print(f"  {s['addr']:<22} {rtt:>10}  {s['note']}")


if __name__ == "__main__":
    main()
