// What the chat-page scripts (chat_page.mjs, chat_page_auth.mjs) share: named checks with a
// global timeout and an `N passed, M failed` summary, a timeout per await, and the page's own
// `HubConnection` loaded from the node the way a browser loads it (the script fetched from the
// node, `location` its origin, `WebSocket` the `ws` package recording the URLs it opens).

import WebSocketImpl from "ws";

/** Starts the run: after `seconds` it fails as a whole. */
export function checks(seconds = 20) {
  let passed = 0;
  let failed = 0;
  const timer = setTimeout(() => {
    console.log(`FAIL global timeout after ${seconds} s`);
    process.exit(3);
  }, seconds * 1000);
  return {
    /** Runs one named check, printing `ok NAME` or `FAIL NAME: reason`. */
    async check(name, fn) {
      try {
        await fn();
        passed += 1;
        console.log(`ok ${name}`);
      } catch (error) {
        failed += 1;
        console.log(`FAIL ${name}: ${String(error?.message ?? error).replace(/\s+/g, " ")}`);
      }
    },
    /** Prints the summary line and exits: 0 when every check passed. */
    finish() {
      clearTimeout(timer);
      console.log(`${passed} passed, ${failed} failed`);
      process.exit(failed === 0 ? 0 : 1);
    },
  };
}

/** `promise`, or a rejection naming `what` after `ms`. */
export function within(promise, what, ms = 5_000) {
  let t;
  const timeout = new Promise((_, reject) => {
    t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

/** The URLs the page's WebSockets were asked to open, in order. */
export const opened = [];
class PageWebSocket extends WebSocketImpl {
  constructor(url, ...rest) {
    super(url, ...rest);
    opened.push(String(url));
  }
}

/** The page's `HubConnection` class, from the script the node at `base` serves. */
export async function loadHubConnection(base) {
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
  return factory(new URL(base), PageWebSocket, fetch, AbortSignal);
}
