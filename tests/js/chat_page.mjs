// The built-in chat page's own SignalR client (assets/chat.js, `HubConnection`) against a node,
// run in Node the way a browser runs it: the script is fetched from the node, `location` is the
// node's origin, and `WebSocket` is the `ws` package (the browser API's shape). Over https this
// checks that the page negotiates over https and opens its WebSocket as wss.
//
// Usage: node chat_page.mjs <base URL of the node>   (e.g. https://127.0.0.1:5001; with
//        NODE_EXTRA_CA_CERTS=ca.pem when its CA is not a system root)
// Prints `ok <check>` or `FAIL <check>: <reason>` per check and `N passed, M failed`; exits
// non-zero on any failure or after 20 s.

import WebSocketImpl from "ws";

const [base] = process.argv.slice(2);
if (!base) {
  console.error("usage: node chat_page.mjs <base URL of the node>");
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
  // The connection class and its constants come before the first UI helper.
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

await check("the page connects", async () => {
  hub = new HubConnection("/chat", () => "page-user");
  const connected = new Promise((resolve, reject) => {
    hub.onStateChange((state, detail) => {
      if (state === "connected") resolve();
      if (state === "disconnected" || state === "reconnecting") reject(new Error(`${state}: ${detail?.reason}`));
    });
  });
  hub.start();
  await within(connected, "the page to connect");
  const scheme = new URL(base).protocol === "https:" ? "wss:" : "ws:";
  if (!opened.length || new URL(opened[0]).protocol !== scheme) {
    throw new Error(`expected a ${scheme} WebSocket, opened ${JSON.stringify(opened)}`);
  }
});

await check("the page invokes and receives", async () => {
  const received = new Promise((resolve) => hub.on("ReceiveMessage", (user, text) => resolve([user, text])));
  const echoed = await within(hub.invoke("Echo", "from the page"), "Echo");
  if (echoed !== "from the page") throw new Error(`Echo returned ${JSON.stringify(echoed)}`);
  await within(hub.invoke("SendMessage", "page-user", "hello over the page"), "SendMessage");
  const [user, text] = await within(received, "ReceiveMessage");
  if (user !== "page-user" || text !== "hello over the page") {
    throw new Error(`received ${JSON.stringify([user, text])}`);
  }
});

hub?.stop();
clearTimeout(timer);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
