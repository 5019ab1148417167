// The built-in chat page's own SignalR client (assets/chat.js, `HubConnection`) against a node
// started with `--auth jwt`, run in Node as chat_page.mjs does: without a token the page learns
// that the node requires one (a 401 on negotiate, with the node's reason, and no retry loop);
// with the token (what the page's field or `#access_token=` sets) it connects, sending
// `Authorization: Bearer` on negotiate and `access_token` on the WebSocket URL.
//
// Usage: node chat_page_auth.mjs <base URL of the node> <valid token for page-user>
// Prints `ok <check>` or `FAIL <check>: <reason>` per check and `N passed, M failed`; exits
// non-zero on any failure or after 20 s.

import WebSocketImpl from "ws";

const [base, token] = process.argv.slice(2);
if (!token) {
  console.error("usage: node chat_page_auth.mjs <base URL of the node> <token>");
  process.exit(2);
}
const timer = setTimeout(() => {
  console.log("FAIL global timeout after 20 s");
  process.exit(3);
}, 20_000);

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok ${name}`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name}: ${String(error?.message ?? error).replace(/\s+/g, " ")}`);
  }
}

function within(promise, what, ms = 5_000) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

/** The `WebSocket` the page gets: the `ws` package, recording the URLs it is asked to open. */
const opened = [];
class PageWebSocket extends WebSocketImpl {
  constructor(url, ...rest) {
    super(url, ...rest);
    opened.push(String(url));
  }
}

let HubConnection;
let hub;
await check("the page's script is served by the node", async () => {
  const response = await fetch(new URL("/assets/chat.js", base));
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const source = await response.text();
  const end = source.indexOf("function hash(");
  if (end < 0) throw new Error("chat.js has no `function hash(`: the cut point moved");
  const factory = new Function(
    "location",
    "WebSocket",
    "fetch",
    "AbortSignal",
    `${source.slice(0, end)}\nreturn HubConnection;`,
  );
  HubConnection = factory(new URL(base), PageWebSocket, fetch, AbortSignal);
});

await check("without a token the page learns that the node requires one", async () => {
  const bare = new HubConnection("/chat", () => "page-user");
  const states = [];
  const refused = new Promise((resolve, reject) => {
    bare.onStateChange((state, detail) => {
      states.push(state);
      if (state === "connected") reject(new Error("connected without a token"));
      if (state === "disconnected") resolve(detail);
    });
  });
  bare.start();
  const detail = await within(refused, "the refusal");
  if (!String(detail.unauthorized ?? "").includes("missing token")) {
    throw new Error(`expected the node's reason, got ${JSON.stringify(detail)}`);
  }
  if (states.includes("reconnecting")) throw new Error(`retried a 401: ${states.join(" → ")}`);
  if (opened.length) throw new Error(`opened a WebSocket anyway: ${opened.join(", ")}`);
});

await check("with the token the page connects and the node knows its user", async () => {
  hub = new HubConnection("/chat", () => "someone-else");
  hub.setAccessTokenFactory(() => token);
  const connected = new Promise((resolve, reject) => {
    hub.onStateChange((state, detail) => {
      if (state === "connected") resolve();
      if (state === "disconnected" || state === "reconnecting") reject(new Error(`${state}: ${detail?.reason}`));
    });
  });
  hub.start();
  await within(connected, "the page to connect");
  if (!opened.length || !new URL(opened[0]).searchParams.get("access_token")) {
    throw new Error(`the WebSocket URL carries no access_token: ${JSON.stringify(opened)}`);
  }
  const received = new Promise((resolve) => hub.on("ReceiveMessage", (user, text) => resolve([user, text])));
  // SendToUser to the token's user reaches this page (not "someone-else", the ?user= it sent).
  await within(hub.invoke("SendToUser", "page-user", "x", "for the token's user"), "SendToUser");
  const [, text] = await within(received, "ReceiveMessage");
  if (text !== "for the token's user") throw new Error(`received ${text}`);
});

hub?.stop();
clearTimeout(timer);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
