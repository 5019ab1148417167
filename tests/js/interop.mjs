// Interop checks of two switchboard hub nodes against the official @microsoft/signalr client.
//
// Usage: node interop.mjs <hub URL of node A> <hub URL of node B>
//        (e.g. http://127.0.0.1:5001/chat http://127.0.0.1:5002/chat; https:// URLs work the
//        same, with NODE_EXTRA_CA_CERTS=ca.pem when the nodes' CA is not a system root)
//
// For every protocol (json, messagepack) and every connection mode (negotiate, skipNegotiation),
// and once more with a JSON client on A and a MessagePack client on B, it connects one client to
// A and one to B, runs the same list of checks, and prints one line per
// check: `ok <name>` or `FAIL <name>: <reason>`. It ends with `N passed, M failed` and exits
// non-zero on any failure, or after GLOBAL_TIMEOUT_MS whatever happens. Every check runs (a failed
// connect fails the checks that need it), so the number of lines is the same on every run:
// CHECKS_PER_MODE * MODES.length (16 * 5). tests/js_interop.rs relies on that count.
//
// "Not received" is checked without sleeping: after the message that must not arrive, the sender
// publishes a marker that reaches the receiver through the same Redis subscription connection and
// the same client connection; once the marker is in, the unwanted message had every chance to be.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

/** Longest any single wait may take. */
const WAIT_MS = 5_000;
/** The whole run is abandoned after this, so a hang fails CI instead of stalling it. */
const GLOBAL_TIMEOUT_MS = 60_000;

const [urlA, urlB] = process.argv.slice(2);
if (!urlA || !urlB) {
  console.error("usage: node interop.mjs <hub URL of node A> <hub URL of node B>");
  process.exit(2);
}

let passed = 0;
let failed = 0;

const globalTimer = setTimeout(() => {
  console.log(`FAIL global timeout: the run took longer than ${GLOBAL_TIMEOUT_MS / 1000} s`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(3);
}, GLOBAL_TIMEOUT_MS);

/** A promise that rejects after `ms` with a message naming what was awaited. */
function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Logs warnings and errors of the client library to stderr, tagged with the client's name. */
class StderrLogger {
  constructor(tag) {
    this.tag = tag;
  }
  log(level, message) {
    if (level >= signalR.LogLevel.Warning) {
      console.error(`[${this.tag}] ${signalR.LogLevel[level]}: ${message}`);
    }
  }
}

/**
 * One client: a HubConnection plus an inbox of every ReceiveMessage it got, so checks can wait
 * for a message that matches a predicate (or assert that one never came).
 */
class Client {
  constructor(tag, hubUrl, user, protocol, skipNegotiation) {
    this.tag = tag;
    this.user = user;
    this.inbox = [];
    this.waiters = [];
    this.closedWith = null;
    this.closed = false;
    const url = `${hubUrl}?user=${encodeURIComponent(user)}`;
    const options = skipNegotiation
      ? { transport: signalR.HttpTransportType.WebSockets, skipNegotiation: true }
      : { transport: signalR.HttpTransportType.WebSockets };
    const builder = new signalR.HubConnectionBuilder()
      .withUrl(url, options)
      .configureLogging(new StderrLogger(tag));
    if (protocol === "messagepack") {
      builder.withHubProtocol(new MessagePackHubProtocol());
    }
    this.connection = builder.build();
    this.connection.on("ReceiveMessage", (user, message) => {
      const entry = { user, message };
      this.inbox.push(entry);
      this.waiters = this.waiters.filter((w) => !w.predicate(entry) || (w.resolve(entry), false));
    });
    this.closedPromise = new Promise((resolve) => {
      this.connection.onclose((error) => {
        this.closed = true;
        this.closedWith = error ?? null;
        resolve(error ?? null);
      });
    });
  }

  start() {
    return withTimeout(this.connection.start(), `${this.tag} to connect`);
  }

  invoke(method, ...args) {
    return withTimeout(this.connection.invoke(method, ...args), `${this.tag} invoke ${method}`);
  }

  send(method, ...args) {
    return withTimeout(this.connection.send(method, ...args), `${this.tag} send ${method}`);
  }

  /** Resolves with the first inbox entry (already there or still to come) matching `predicate`. */
  waitFor(predicate, what) {
    const found = this.inbox.find(predicate);
    if (found) return Promise.resolve(found);
    const promise = new Promise((resolve) => this.waiters.push({ predicate, resolve }));
    return withTimeout(promise, `${this.tag} to receive ${what}`);
  }

  /** Waits for a message whose text is exactly `text`. */
  waitForText(text) {
    return this.waitFor((m) => m.message === text, JSON.stringify(text));
  }

  has(text) {
    return this.inbox.some((m) => m.message === text);
  }
}

function unique(label) {
  return `${label}-${randomBytes(4).toString("hex")}`;
}

/** The checks run for one (protocol, mode) pair, in order. Each gets the shared context. */
const CHECKS = [
  ["connect A and B", async (ctx) => {
    await Promise.all([ctx.a.start(), ctx.b.start()]);
    ctx.connected = true;
    assert.equal(ctx.a.connection.state, signalR.HubConnectionState.Connected);
    assert.equal(ctx.b.connection.state, signalR.HubConnectionState.Connected);
  }],
  ["SendMessage from A reaches B and A", async (ctx) => {
    // Non-ASCII on purpose: the text crosses JSON, MessagePack and the Redis payload.
    const text = unique("héllo wörld ✓ 🚀");
    await ctx.a.invoke("SendMessage", ctx.a.user, text);
    const [onB, onA] = await Promise.all([ctx.b.waitForText(text), ctx.a.waitForText(text)]);
    assert.equal(onB.user, ctx.a.user);
    assert.equal(onA.user, ctx.a.user);
  }],
  ["SendMessage without an invocation id (send) reaches B", async (ctx) => {
    const text = unique("fire-and-forget");
    await ctx.b.send("SendMessage", ctx.b.user, text);
    const onA = await ctx.a.waitForText(text);
    assert.equal(onA.user, ctx.b.user);
  }],
  ["hub method names are case-insensitive", async (ctx) => {
    const text = unique("lowercase");
    await ctx.a.invoke("sendmessage", ctx.a.user, text);
    await ctx.b.waitForText(text);
  }],
  ["SendToOthers reaches B but not the caller", async (ctx) => {
    const text = unique("to-others");
    const marker = unique("marker");
    await ctx.a.invoke("SendToOthers", ctx.a.user, text);
    await ctx.b.waitForText(text);
    await ctx.a.invoke("SendMessage", ctx.a.user, marker);
    await ctx.a.waitForText(marker);
    assert.ok(!ctx.a.has(text), "the caller received its own SendToOthers message");
  }],
  ["JoinGroup on B + SendToGroup from A reaches B only", async (ctx) => {
    const text = unique("group-msg");
    const marker = unique("marker");
    await ctx.b.invoke("JoinGroup", ctx.group);
    await ctx.a.invoke("SendToGroup", ctx.group, ctx.a.user, text);
    const onB = await ctx.b.waitForText(text);
    assert.equal(onB.user, ctx.a.user);
    await ctx.a.invoke("SendMessage", ctx.a.user, marker);
    await ctx.a.waitForText(marker);
    assert.ok(!ctx.a.has(text), "A is not in the group but received the group message");
  }],
  ["LeaveGroup on B stops group messages", async (ctx) => {
    const text = unique("after-leave");
    const marker = unique("marker");
    await ctx.b.invoke("LeaveGroup", ctx.group);
    await ctx.a.invoke("SendToGroup", ctx.group, ctx.a.user, text);
    await ctx.a.invoke("SendMessage", ctx.a.user, marker);
    await ctx.b.waitForText(marker);
    assert.ok(!ctx.b.has(text), "B left the group but still received a group message");
  }],
  ["SendToUser from A reaches B's user", async (ctx) => {
    const text = unique("to-user");
    await ctx.a.invoke("SendToUser", ctx.b.user, ctx.a.user, text);
    const onB = await ctx.b.waitForText(text);
    assert.equal(onB.user, ctx.a.user);
  }],
  ["Echo returns a deep-equal value", async (ctx) => {
    const value = { a: [1, "x"] };
    const echoed = await ctx.a.invoke("Echo", value);
    assert.deepEqual(echoed, value);
    const echoedOnB = await ctx.b.invoke("Echo", "ünïcode ✓");
    assert.equal(echoedOnB, "ünïcode ✓");
  }],
  ["GetConnectionId returns the connection id", async (ctx) => {
    const idA = await ctx.a.invoke("GetConnectionId");
    const idB = await ctx.b.invoke("GetConnectionId");
    assert.match(idA, /^[A-Za-z0-9_-]{22}$/, `A's id ${JSON.stringify(idA)} is not 22 base64url chars`);
    assert.match(idB, /^[A-Za-z0-9_-]{22}$/, `B's id ${JSON.stringify(idB)} is not 22 base64url chars`);
    assert.notEqual(idA, idB);
    if (ctx.skipNegotiation) {
      // The client never learns its id without negotiate.
      assert.equal(ctx.a.connection.connectionId, null);
    } else {
      assert.equal(idA, ctx.a.connection.connectionId);
      assert.equal(idB, ctx.b.connection.connectionId);
    }
    ctx.idA = idA;
    ctx.idB = idB;
  }],
  ["SendToConnection from A reaches B's connection", async (ctx) => {
    assert.ok(ctx.idB, "B's connection id is unknown (GetConnectionId failed)");
    const text = unique("to-connection");
    await ctx.a.invoke("SendToConnection", ctx.idB, ctx.a.user, text);
    const onB = await ctx.b.waitForText(text);
    assert.equal(onB.user, ctx.a.user);
  }],
  ["AddToGroup from A puts B's connection in a group", async (ctx) => {
    assert.ok(ctx.idB, "B's connection id is unknown (GetConnectionId failed)");
    const group = unique("remote-group");
    const text = unique("remote-group-msg");
    // B lives on the other node: this is the backplane's group command with its ack.
    await ctx.a.invoke("AddToGroup", ctx.idB, group);
    await ctx.a.invoke("SendToGroup", group, ctx.a.user, text);
    await ctx.b.waitForText(text);
    const after = unique("after-remove");
    const marker = unique("marker");
    await ctx.a.invoke("RemoveFromGroup", ctx.idB, group);
    await ctx.a.invoke("SendToGroup", group, ctx.a.user, after);
    await ctx.a.invoke("SendMessage", ctx.a.user, marker);
    await ctx.b.waitForText(marker);
    assert.ok(!ctx.b.has(after), "B was removed from the group but still received a group message");
  }],
  ["unknown method is rejected with the server's error", async (ctx) => {
    const expected = "Unknown hub method 'NoSuchMethod'";
    await assert.rejects(ctx.a.invoke("NoSuchMethod"), (error) => {
      // The official client rejects with `new Error(completion.error)`: the server's text as is.
      assert.equal(error?.message, expected);
      return true;
    });
  }],
  ["wrong argument count is rejected with the server's error", async (ctx) => {
    const expected = "Failed to invoke 'Echo' due to an error on the server.";
    await assert.rejects(ctx.b.invoke("Echo"), (error) => {
      // Exactly ASP.NET Core's text with detailed errors off (the default): no detail appended.
      assert.equal(error?.message, expected);
      return true;
    });
    // The connection survives a failed invocation.
    assert.equal(await ctx.b.invoke("Echo", 42), 42);
  }],
  ["no unexpected close during the checks", async (ctx) => {
    assert.ok(!ctx.a.closed, `A closed early: ${ctx.a.closedWith?.message ?? "no error"}`);
    assert.ok(!ctx.b.closed, `B closed early: ${ctx.b.closedWith?.message ?? "no error"}`);
  }],
  ["stop() closes both cleanly", async (ctx) => {
    await Promise.all([
      withTimeout(ctx.a.connection.stop(), "A to stop"),
      withTimeout(ctx.b.connection.stop(), "B to stop"),
    ]);
    const [errA, errB] = await Promise.all([
      withTimeout(ctx.a.closedPromise, "A's onclose"),
      withTimeout(ctx.b.closedPromise, "B's onclose"),
    ]);
    assert.equal(errA, null, `A closed with ${errA?.message}`);
    assert.equal(errB, null, `B closed with ${errB?.message}`);
    assert.equal(ctx.a.connection.state, signalR.HubConnectionState.Disconnected);
    assert.equal(ctx.b.connection.state, signalR.HubConnectionState.Disconnected);
  }],
];

/**
 * One run of every check. `protocolA`/`protocolB` are the hub protocols of the clients on node A
 * and node B; they differ in the mixed mode, where each message crosses the backplane as the
 * payload's per-protocol serializations and must come out right in the other protocol.
 */
async function runMode(protocolA, protocolB, skipNegotiation) {
  const protocols = protocolA === protocolB ? protocolA : `${protocolA}+${protocolB}`;
  const mode = `${protocols}/${skipNegotiation ? "skipNegotiation" : "negotiate"}`;
  const tag = `${protocols}-${skipNegotiation ? "skip" : "neg"}`;
  const ctx = {
    skipNegotiation,
    connected: false,
    group: unique(`room-${tag}`),
    a: new Client(`${mode} A`, urlA, unique(`alice-${tag}`), protocolA, skipNegotiation),
    b: new Client(`${mode} B`, urlB, unique(`bob-${tag}`), protocolB, skipNegotiation),
  };
  for (const [name, check] of CHECKS) {
    const label = `${mode}: ${name}`;
    try {
      if (!ctx.connected && name !== CHECKS[0][0]) {
        throw new Error("not run: the clients did not connect");
      }
      await check(ctx);
      passed += 1;
      console.log(`ok ${label}`);
    } catch (error) {
      failed += 1;
      const reason = String(error?.message ?? error).replace(/\s+/g, " ");
      console.log(`FAIL ${label}: ${reason}`);
    }
  }
  // Leave nothing running, whatever failed.
  await Promise.allSettled([ctx.a.connection.stop(), ctx.b.connection.stop()]);
}

/** (protocol on A, protocol on B, skipNegotiation) */
const MODES = [
  ["json", "json", false],
  ["json", "json", true],
  ["messagepack", "messagepack", false],
  ["messagepack", "messagepack", true],
  ["json", "messagepack", false],
];

for (const [protocolA, protocolB, skipNegotiation] of MODES) {
  await runMode(protocolA, protocolB, skipNegotiation);
}

clearTimeout(globalTimer);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
