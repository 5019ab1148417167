// The built-in chat page's own SignalR client (assets/chat.js, `HubConnection`) against a node
// started with `--auth jwt`, run in Node as chat_page.mjs does: without a token the page learns
// that the node requires one (a 401 on negotiate, with the node's reason, and no retry loop);
// with the token (what the page's field or `#access_token=` sets) it connects, sending
// `Authorization: Bearer` on negotiate and `access_token` on the WebSocket URL.
//
// Usage: node chat_page_auth.mjs <base URL of the node> <valid token for page-user>
// Prints `ok <check>` or `FAIL <check>: <reason>` per check and `N passed, M failed`; exits
// non-zero on any failure or after 20 s.

import { checks, loadHubConnection, opened, within } from "./page_harness.mjs";

const [base, token] = process.argv.slice(2);
if (!token) {
  console.error("usage: node chat_page_auth.mjs <base URL of the node> <token>");
  process.exit(2);
}
const { check, finish } = checks(20);

let HubConnection;
let hub;
await check("the page's script is served by the node", async () => {
  HubConnection = await loadHubConnection(base);
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
finish();
