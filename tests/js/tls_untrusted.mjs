// The official @microsoft/signalr client against an https:// node whose CA it does not trust:
// start() must fail with Node's certificate error, never connect.
//
// Usage: node tls_untrusted.mjs <https hub URL>   (run WITHOUT NODE_EXTRA_CA_CERTS)
// Prints `ok refused: <the client's error>` and exits 0, or `FAIL <reason>` and exits 1.

import * as signalR from "@microsoft/signalr";

const [url] = process.argv.slice(2);
if (!url) {
  console.error("usage: node tls_untrusted.mjs <https hub URL>");
  process.exit(2);
}

const timer = setTimeout(() => {
  console.log("FAIL timed out after 10 s");
  process.exit(3);
}, 10_000);

const connection = new signalR.HubConnectionBuilder()
  .withUrl(url, { transport: signalR.HttpTransportType.WebSockets })
  .configureLogging(signalR.LogLevel.None)
  .build();
try {
  await connection.start();
  console.log("FAIL connected to a node whose certificate is not trusted");
  await connection.stop();
  process.exitCode = 1;
} catch (error) {
  // The client reports "fetch failed" and drops the cause; Node's own fetch of the same
  // negotiate URL shows the TLS reason (its `cause.code`), so a refused port cannot pass for it.
  let cause = "";
  try {
    await fetch(new URL(`${new URL(url).pathname}/negotiate?negotiateVersion=1`, url), { method: "POST" });
    cause = "a plain fetch of negotiate succeeded";
  } catch (fetchError) {
    cause = [fetchError?.cause?.code, fetchError?.cause?.message].filter(Boolean).join(": ");
  }
  console.log(`ok refused: ${String(error?.message ?? error).replace(/\s+/g, " ")} (cause: ${cause})`);
}
clearTimeout(timer);
