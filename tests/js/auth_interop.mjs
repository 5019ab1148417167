// `switchboard hub --auth jwt` with the official @microsoft/signalr client and its
// `accessTokenFactory`, on two nodes sharing one Redis.
//
// Usage: node auth_interop.mjs <hub URL of node A> <hub URL of node B> <token for alice>
//        <token for bob> <expired token>
//
// Prints `ok <name>` or `FAIL <name>: <reason>` per check, then `N passed, M failed`; exits
// non-zero on any failure or after GLOBAL_TIMEOUT_MS. tests/auth_interop.rs counts the lines.

import * as signalR from "@microsoft/signalr";
import { MessagePackHubProtocol } from "@microsoft/signalr-protocol-msgpack";

const WAIT_MS = 5_000;
const GLOBAL_TIMEOUT_MS = 60_000;

const [urlA, urlB, aliceToken, bobToken, expiredToken] = process.argv.slice(2);
if (!expiredToken) {
  console.error("usage: node auth_interop.mjs <url A> <url B> <alice token> <bob token> <expired token>");
  process.exit(2);
}

let passed = 0;
let failed = 0;
setTimeout(() => {
  console.log(`FAIL global timeout after ${GLOBAL_TIMEOUT_MS / 1000} s`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(3);
}, GLOBAL_TIMEOUT_MS).unref();

function withTimeout(promise, what, ms = WAIT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const quiet = { log(level, message) { if (level >= signalR.LogLevel.Error) console.error(message); } };

function connection(url, token, { protocol = "json", skipNegotiation = false, user } = {}) {
  const target = user ? `${url}?user=${encodeURIComponent(user)}` : url;
  const options = { transport: signalR.HttpTransportType.WebSockets, skipNegotiation };
  if (token !== null) options.accessTokenFactory = () => token;
  const builder = new signalR.HubConnectionBuilder().withUrl(target, options).configureLogging(quiet);
  if (protocol === "messagepack") builder.withHubProtocol(new MessagePackHubProtocol());
  const conn = builder.build();
  conn.inbox = [];
  conn.waiters = [];
  conn.on("ReceiveMessage", (from, message) => {
    const entry = { from, message };
    conn.inbox.push(entry);
    conn.waiters = conn.waiters.filter((w) => !(w.text === message && (w.resolve(entry), true)));
  });
  conn.waitForText = (text) => {
    const found = conn.inbox.find((m) => m.message === text);
    if (found) return Promise.resolve(found);
    return withTimeout(new Promise((resolve) => conn.waiters.push({ text, resolve })), `message ${text}`);
  };
  return conn;
}

async function check(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`ok ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e?.message ?? e}`);
  }
}

const stop = (c) => c.stop().catch(() => {});

for (const protocol of ["json", "messagepack"]) {
  for (const skipNegotiation of [false, true]) {
    const mode = `${protocol}${skipNegotiation ? " skipNegotiation" : ""}`;
    // alice on A, bob on B (bob asks for ?user=alice: the token wins).
    const alice = connection(urlA, aliceToken, { protocol, skipNegotiation });
    const bob = connection(urlB, bobToken, { protocol, skipNegotiation, user: "alice" });
    await check(`${mode}: both connect with accessTokenFactory`, async () => {
      await withTimeout(Promise.all([alice.start(), bob.start()]), "both to connect");
    });
    await check(`${mode}: SendToUser from A reaches the token's user on B`, async () => {
      const text = `to bob ${Math.random()}`;
      await withTimeout(alice.invoke("SendToUser", "bob", "alice", text), "SendToUser");
      const got = await bob.waitForText(text);
      if (got.from !== "alice") throw new Error(`from ${got.from}`);
    });
    await check(`${mode}: ?user=alice on bob's connection is ignored`, async () => {
      const notForBob = `to alice ${Math.random()}`;
      const marker = `marker ${Math.random()}`;
      await withTimeout(alice.invoke("SendToUser", "alice", "alice", notForBob), "SendToUser alice");
      await withTimeout(alice.invoke("SendToUser", "bob", "alice", marker), "SendToUser marker");
      await bob.waitForText(marker);
      if (bob.inbox.some((m) => m.message === notForBob)) throw new Error("bob got alice's message");
    });
    await Promise.all([stop(alice), stop(bob)]);
  }
}

for (const [what, token, expected] of [
  ["no token", null, "401"],
  ["an expired token", expiredToken, "401"],
]) {
  for (const skipNegotiation of [false, true]) {
    await check(`${what}${skipNegotiation ? " (skipNegotiation)" : ""} is refused`, async () => {
      const conn = connection(urlA, token, { skipNegotiation });
      let error = null;
      try {
        await withTimeout(conn.start(), "start to fail");
      } catch (e) {
        error = e;
      }
      await stop(conn);
      if (!error) throw new Error("connected without a valid token");
      // Negotiate's 401 reaches the client as a status code; a refused WebSocket upgrade as a
      // failed WebSocket (Node's `ws` reports the 401).
      const text = `${error.message ?? error} ${error.statusCode ?? ""}`;
      if (!skipNegotiation && !text.includes(expected)) throw new Error(`unexpected error: ${text}`);
    });
  }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
