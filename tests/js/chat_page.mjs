// The built-in chat page's own SignalR client (assets/chat.js, `HubConnection`) against a node,
// run in Node the way a browser runs it: the script is fetched from the node, `location` is the
// node's origin, and `WebSocket` is the `ws` package (the browser API's shape). Over https this
// checks that the page negotiates over https and opens its WebSocket as wss.
//
// Usage: node chat_page.mjs <base URL of the node>   (e.g. https://127.0.0.1:5001; with
//        NODE_EXTRA_CA_CERTS=ca.pem when its CA is not a system root)
// Prints `ok <check>` or `FAIL <check>: <reason>` per check and `N passed, M failed`; exits
// non-zero on any failure or after 20 s.

import { checks, loadHubConnection, opened, within } from "./page_harness.mjs";

const [base] = process.argv.slice(2);
if (!base) {
  console.error("usage: node chat_page.mjs <base URL of the node>");
  process.exit(2);
}
const { check, finish } = checks(20);

let HubConnection;
let hub;
await check("the page's script is served by the node", async () => {
  HubConnection = await loadHubConnection(base);
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
finish();
