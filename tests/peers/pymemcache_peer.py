"""Drives pymemcache's HashClient (default rendezvous hashing) for tests/interop_live.rs.

    python pymemcache_peer.py ACTION SERVERS KEYFILE [TAG]

ACTION  set     stores every key (a str) with the value "TAG:KEY", then prints "stored N"
                and "failed N"
        get     reads every key, prints "hits N", "missing N", "wrong N", and up to 5
                "example KEY" lines for keys that were missing or wrong
        locate  prints "KEY<TAB>HOST:PORT" per key: the hasher's choice, computed locally
        version prints pymemcache's version
SERVERS comma-separated HOST:PORT, given to HashClient as (host, port) tuples.
KEYFILE one key per line (UTF-8, no whitespace); keys are passed as str, so non-ASCII keys
        need allow_unicode_keys=True.
"""

import sys

import pymemcache
from pymemcache.client.hash import HashClient


def main(argv):
    if len(argv) >= 2 and argv[1] == "version":
        print(pymemcache.__version__)
        return 0
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    action, servers, keyfile = argv[1], argv[2], argv[3]
    tag = argv[4] if len(argv) > 4 else "py"
    nodes = []
    for spec in servers.split(","):
        host, port = spec.rsplit(":", 1)
        nodes.append((host, int(port)))
    client = HashClient(
        nodes,
        allow_unicode_keys=True,
        connect_timeout=2,
        timeout=2,
        ignore_exc=False,
        retry_attempts=0,
    )
    with open(keyfile, encoding="utf-8") as f:
        keys = [line for line in f.read().split("\n") if line]

    if action == "set":
        stored = failed = 0
        for key in keys:
            value = f"{tag}:{key}".encode("utf-8")
            if client.set(key, value, expire=600, noreply=False):
                stored += 1
            else:
                failed += 1
                if failed <= 5:
                    print(f"example {key}")
        print(f"stored {stored}\nfailed {failed}")
    elif action == "get":
        hits = missing = wrong = 0
        for key in keys:
            value = client.get(key)
            bad = True
            if value is None:
                missing += 1
            elif value != f"{tag}:{key}".encode("utf-8"):
                wrong += 1
            else:
                hits += 1
                bad = False
            if bad and missing + wrong <= 5:
                print(f"example {key}")
        print(f"hits {hits}\nmissing {missing}\nwrong {wrong}")
    elif action == "locate":
        out = []
        for key in keys:
            out.append(f"{key}\t{client.hasher.get_node(key)}")
        sys.stdout.write("\n".join(out) + "\n")
    else:
        print(f"unknown action {action}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
