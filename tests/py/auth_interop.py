"""`switchboard hub --auth jwt` with the Python `signalrcore` client and its
`access_token_factory`, on two nodes sharing one Redis.

Usage: python auth_interop.py <hub URL of node A> <hub URL of node B> <token for alice> <token for bob>

Prints `ok <name>` or `FAIL <name>: <reason>` per check, then `N passed, M failed`; exits
non-zero on any failure. tests/auth_interop.rs counts the lines. Every wait has a timeout.
"""

import logging
import sys
import threading
import uuid

from signalrcore.hub_connection_builder import HubConnectionBuilder

WAIT_S = 10.0


def connection(url, token):
    conn = (
        HubConnectionBuilder()
        .with_url(url, options={"access_token_factory": lambda: token})
        .configure_logging(logging.CRITICAL)
        .build()
    )
    conn.opened = threading.Event()
    conn.inbox = []
    conn.arrived = threading.Condition()
    conn.on_open(conn.opened.set)

    def receive(args):
        with conn.arrived:
            conn.inbox.append(list(args))
            conn.arrived.notify_all()

    conn.on("ReceiveMessage", receive)
    return conn


def wait_for(conn, text):
    with conn.arrived:
        ok = conn.arrived.wait_for(lambda: any(m[1] == text for m in conn.inbox), timeout=WAIT_S)
    if not ok:
        raise RuntimeError(f"no message {text!r} within {WAIT_S} s (inbox {conn.inbox})")


def main():
    url_a, url_b, alice_token, bob_token = sys.argv[1:5]
    passed = failed = 0

    def check(name, body):
        nonlocal passed, failed
        try:
            body()
            passed += 1
            print(f"ok {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported as a line
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)

    alice = connection(url_a, alice_token)
    # bob asks for ?user=alice: the token's user wins.
    bob = connection(url_b + "?user=alice", bob_token)

    def connect():
        alice.start()
        bob.start()
        if not alice.opened.wait(WAIT_S) or not bob.opened.wait(WAIT_S):
            raise RuntimeError("the connections did not open")

    def send_to_user():
        text = f"to bob {uuid.uuid4()}"
        alice.send("SendToUser", ["bob", "alice", text])
        wait_for(bob, text)

    def user_param_ignored():
        not_for_bob = f"to alice {uuid.uuid4()}"
        marker = f"marker {uuid.uuid4()}"
        alice.send("SendToUser", ["alice", "alice", not_for_bob])
        alice.send("SendToUser", ["bob", "alice", marker])
        wait_for(bob, marker)
        if any(m[1] == not_for_bob for m in bob.inbox):
            raise RuntimeError("bob got alice's message")

    check("both connect with access_token_factory", connect)
    check("SendToUser from A reaches the token's user on B", send_to_user)
    check("?user=alice on bob's connection is ignored", user_param_ignored)
    for conn in (alice, bob):
        try:
            conn.stop()
        except Exception:  # noqa: BLE001 - best effort at the end
            pass
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
