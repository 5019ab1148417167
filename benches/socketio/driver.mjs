// The load driver of scripts/socketio-compare.sh, for both targets: the shape of
// `switchboard load`, in JavaScript, so Switchboard and Socket.IO nodes meet the same clients.
//
// N clients alternate across the nodes (client i on node i mod nodes); the first S broadcast with
// `SendMessage(user, text)` at the aggregate rate in deliveries/s (a broadcast reaches all N, so
// each sender sends every S·N/rate seconds, the senders offset evenly within that period); every
// client counts `ReceiveMessage(user, text)`. The text is `switchboard load`'s:
// `lt:{run}:{sender}:{seq}:{sender's node}:{sent µs}:` padded to 64 bytes, stamped and read with
// this process's one monotonic clock, so latency is per path (cross-node / same-node).
//
// Usage: node driver.mjs --target switchboard|socketio --client official|raw --node URL --node URL
//          [--clients 200] [--senders 10] [--rate 40000] [--duration 10] [--drain 1]
// Clients: `official` = @microsoft/signalr HubConnection (WebSockets, skipNegotiation, JSON) or
// socket.io-client (websocket transport); `raw` = the `ws` package speaking the protocol text
// directly (SignalR JSON hub protocol; engine.io 4 / socket.io 5), to see what the client
// library itself costs the driver.
//
// Forked with an IPC channel (compare.mjs), it answers the message "mark" with
// `{kind: "mark", received, cpu: process.cpuUsage(), at}` (deliveries received so far, this
// process's CPU, performance.now() in ms) and ends with `{kind: "report", ...}`; run alone, it
// prints the report as JSON. Latencies are reported twice: over the whole sending phase and the
// drain (`cross_node`, `same_node`, as `switchboard load` does), and over the window between the
// first and the second mark (`window`): a JIT-compiled node or driver is slow in its first second
// (Socket.IO nodes' p99 there is a few hundred ms), which the whole phase's p99 carries.

import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import * as signalR from "@microsoft/signalr";
import { io } from "socket.io-client";
import WebSocket from "ws";

/** Length of each message text, as `switchboard load --message-size` defaults to. */
const MESSAGE_SIZE = 64;
/** A connect that takes longer than this fails (a healthy loopback connect takes milliseconds). */
const CONNECT_TIMEOUT_MS = 10_000;
/** The SignalR client's keep-alive interval: the hub drops a client silent for 30 s. */
const SIGNALR_PING_MS = 15_000;

/**
 * Latencies in µs, log-linear: exact below 1,024 µs, then 512 buckets per power of two (each
 * within 0.2 %), up to 2^31 µs; a fixed ~12,000 counters, so recording costs the same at any rate.
 */
class Histogram {
  counts = new Float64Array(1024 + 22 * 512);
  total = 0;

  record(us) {
    const v = Math.min(Math.max(0, Math.round(us)), 2 ** 31 - 1);
    const e = 31 - Math.clz32(v);
    this.counts[v < 1024 ? v : 1024 + (e - 10) * 512 + ((v >>> (e - 9)) & 511)]++;
    this.total++;
  }

  /** The upper edge of the bucket holding the q-quantile, in ms (nearest rank). */
  quantile(q) {
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i++) {
      seen += this.counts[i];
      if (seen < rank) continue;
      if (i < 1024) return i / 1000;
      const e = 10 + ((i - 1024) >> 9);
      return ((513 + ((i - 1024) & 511)) * 2 ** (e - 9)) / 1000;
    }
    return null;
  }

  summary() {
    if (this.total === 0) return { count: 0, p50_ms: null, p99_ms: null };
    return { count: this.total, p50_ms: this.quantile(0.5), p99_ms: this.quantile(0.99) };
  }
}

const { values: opts } = parseArgs({
  options: {
    target: { type: "string" },
    client: { type: "string", default: "official" },
    node: { type: "string", multiple: true, default: [] },
    clients: { type: "string", default: "200" },
    senders: { type: "string", default: "10" },
    rate: { type: "string", default: "40000" },
    duration: { type: "string", default: "10" },
    drain: { type: "string", default: "1" },
  },
});
const connector = connectors()[`${opts.target}/${opts.client}`];
if (!connector || opts.node.length === 0) {
  console.error("driver.mjs: give --target switchboard|socketio, --client official|raw and --node URL (repeat)");
  process.exit(2);
}
const nodes = opts.node;
const clientCount = Number(opts.clients);
const senderCount = Math.min(Number(opts.senders), clientCount);
const rate = Number(opts.rate);
const durationMs = Number(opts.duration) * 1000;
const drainMs = Number(opts.drain) * 1000;

const runId = Math.floor(Math.random() * 2 ** 48).toString(16).padStart(16, "0");
const nowMicros = () => Math.round(performance.now() * 1000);
const whole = { cross: new Histogram(), same: new Histogram() };
const windowed = { cross: new Histogram(), same: new Histogram() };
let marks = 0; // the window is open between the first and the second mark
let received = 0; // every ReceiveMessage, duplicates included: the nodes' deliveries
let distinct = 0;
let duplicates = 0;
let disconnectedEarly = 0;
let stopping = false;
const sent = new Array(senderCount).fill(0);

// The driver never outlives the orchestrator that forked it.
process.on("disconnect", () => process.exit(1));
process.on("message", (m) => {
  if (m === "mark") {
    marks++;
    process.send({ kind: "mark", received, cpu: process.cpuUsage(), at: performance.now() });
  }
});

/** One client: where it is, and what it saw of each sender (next expected seq, seqs skipped). */
function newClient(index) {
  const state = {
    index,
    node: index % nodes.length,
    link: null,
    seen: Array.from({ length: senderCount }, () => ({ next: 0, missing: new Set() })),
  };
  state.onMessage = (_user, text) => receive(state, text);
  state.onEnd = () => {
    if (state.link && !stopping) disconnectedEarly++;
  };
  return state;
}

function receive(client, text) {
  const now = nowMicros();
  received++;
  const [tag, run, sender, seq, node, sentUs] = String(text).split(":", 6);
  if (tag !== "lt" || run !== runId) return;
  const seen = client.seen[Number(sender)];
  if (!seen) return;
  const s = Number(seq);
  if (s >= seen.next) {
    for (let k = seen.next; k < s; k++) seen.missing.add(k);
    seen.next = s + 1;
  } else if (!seen.missing.delete(s)) {
    duplicates++;
    return;
  }
  distinct++;
  const path = Number(node) === client.node ? "same" : "cross";
  whole[path].record(now - Number(sentUs));
  if (marks === 1) windowed[path].record(now - Number(sentUs));
}

function messageText(sender, seq, node) {
  return `lt:${runId}:${sender}:${seq}:${node}:${nowMicros()}:`.padEnd(MESSAGE_SIZE, "x");
}

// Connect everyone (each within its timeout), then send for `duration`, drain, report.
const clients = Array.from({ length: clientCount }, (_, i) => newClient(i));
let connectFailures = 0;
let firstConnectError = null;
await Promise.all(
  clients.map(async (c) => {
    try {
      c.link = await withTimeout(connector(nodes[c.node], c.onMessage, c.onEnd), CONNECT_TIMEOUT_MS);
    } catch (e) {
      connectFailures++;
      firstConnectError ??= String(e?.message ?? e);
    }
  }),
);
const connected = clients.filter((c) => c.link);
const senders = clients.slice(0, senderCount).filter((c) => c.link);
if (senders.length > 0 && rate > 0) await send(senders, connected.length);
await sleep(drainMs);

let lost = 0;
for (const c of connected) {
  for (let s = 0; s < senderCount; s++) {
    const seen = c.seen[s];
    lost += sent[s] - (seen.next - seen.missing.size);
  }
}
const report = {
  kind: "report",
  target: opts.target,
  client: opts.client,
  clients: clientCount,
  connected: connected.length,
  connect_failures: connectFailures,
  first_connect_error: firstConnectError,
  sent: sent.reduce((a, b) => a + b, 0),
  received,
  delivered: distinct,
  lost,
  duplicates,
  disconnected_early: disconnectedEarly,
  cross_node: whole.cross.summary(),
  same_node: whole.same.summary(),
  window: { cross_node: windowed.cross.summary(), same_node: windowed.same.summary() },
};
stopping = true;
await Promise.allSettled(connected.map((c) => withTimeout(Promise.resolve(c.link.close()), 1000)));
if (process.send) {
  process.send(report, () => process.exit(0));
} else {
  console.log(JSON.stringify(report, null, 2));
  process.exit(0);
}

/**
 * Sends for `durationMs`: one timer walks the run's sends in order (sender k of the S senders
 * sends at start + (n·S + k)·period/S), so the senders stay evenly offset. A driver that falls
 * more than one period behind skips the sends it missed (as `switchboard load` does) rather than
 * bursting: the window's deliveries/s then shows it fell short.
 */
function send(senders, receivers) {
  const periodMs = (1000 * senderCount * receivers) / rate;
  const gapMs = periodMs / senders.length;
  const start = performance.now();
  const end = start + durationMs;
  let n = 0;
  return new Promise((resolve) => {
    const tick = () => {
      const now = performance.now();
      if (now >= end) return resolve();
      if (now - (start + n * gapMs) > periodMs) n = Math.floor((now - start) / gapMs);
      while (start + n * gapMs <= now) {
        const sender = senders[n % senders.length];
        const seq = sent[sender.index]++;
        sender.link.send(`load-${sender.index}`, messageText(sender.index, seq, sender.node));
        n++;
      }
      setTimeout(tick, Math.max(0, start + n * gapMs - performance.now()));
    };
    tick();
  });
}

/**
 * How each kind of client connects: `(url, onMessage(user, text), onEnd())` resolves to
 * `{ send(user, text), close() }` once the client may send, or rejects.
 */
function connectors() {
  return {
    "switchboard/official": async (url, onMessage, onEnd) => {
      const connection = new signalR.HubConnectionBuilder()
        .withUrl(url, { transport: signalR.HttpTransportType.WebSockets, skipNegotiation: true })
        .configureLogging(signalR.LogLevel.None)
        .build();
      connection.on("ReceiveMessage", onMessage);
      connection.onclose(onEnd);
      await connection.start();
      return {
        send: (user, text) => connection.send("SendMessage", user, text).catch(() => {}), // onclose counts it
        close: () => connection.stop(),
      };
    },

    "socketio/official": (url, onMessage, onEnd) =>
      new Promise((resolve, reject) => {
        // forceNew: one connection per client (the default multiplexes clients of one URL onto
        // one); no reconnection, so a dropped client shows as disconnected, not as a new one.
        const socket = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
        socket.on("ReceiveMessage", onMessage);
        socket.once("connect_error", reject);
        socket.once("connect", () => {
          socket.on("disconnect", onEnd);
          resolve({
            send: (user, text) => socket.emit("SendMessage", user, text),
            close: () => socket.disconnect(),
          });
        });
      }),

    // SignalR JSON hub protocol: records end with 0x1E; the handshake answer is the first one.
    "switchboard/raw": (url, onMessage, onEnd) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(url.replace(/^http/, "ws"), { perMessageDeflate: false });
        let keepAlive = null;
        ws.on("error", reject);
        ws.on("open", () => ws.send('{"protocol":"json","version":1}\x1e'));
        ws.on("close", () => {
          clearInterval(keepAlive);
          onEnd();
        });
        ws.on("message", (data) => {
          for (const record of data.toString().split("\x1e")) {
            if (record === "") continue;
            const m = JSON.parse(record);
            if (keepAlive === null) {
              if (m.error) return reject(new Error(`handshake: ${m.error}`));
              keepAlive = setInterval(() => ws.send('{"type":6}\x1e'), SIGNALR_PING_MS);
              resolve({
                send: (user, text) =>
                  ws.send(JSON.stringify({ type: 1, target: "SendMessage", arguments: [user, text] }) + "\x1e"),
                close: () => ws.close(),
              });
            } else if (m.type === 1 && m.target === "ReceiveMessage") {
              onMessage(m.arguments[0], m.arguments[1]);
            } else if (m.type === 7) {
              ws.close();
            }
          }
        });
      }),

    // engine.io 4 over WebSocket, one packet a frame: `0{…}` open, `2` ping (answer `3`), `4…` a
    // socket.io 5 packet: `40{…}` connected to "/", `42[event, …args]` an event, `44{…}` refused.
    "socketio/raw": (url, onMessage, onEnd) =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`, {
          perMessageDeflate: false,
        });
        ws.on("error", reject);
        ws.on("close", onEnd);
        ws.on("message", (data) => {
          const packet = data.toString();
          if (packet === "2") {
            ws.send("3");
          } else if (packet.startsWith("42")) {
            const [event, user, text] = JSON.parse(packet.slice(2));
            if (event === "ReceiveMessage") onMessage(user, text);
          } else if (packet[0] === "0") {
            ws.send("40");
          } else if (packet.startsWith("40")) {
            resolve({
              send: (user, text) => ws.send(`42${JSON.stringify(["SendMessage", user, text])}`),
              close: () => ws.close(),
            });
          } else if (packet.startsWith("44")) {
            reject(new Error(`socket.io connect refused: ${packet.slice(2)}`));
          }
        });
      }),
  };
}

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
