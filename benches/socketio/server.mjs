// A Socket.IO chat node on a Redis backplane: the Socket.IO side of scripts/socketio-compare.sh.
// `SendMessage(user, message)` from any client becomes `ReceiveMessage(user, message)` to every
// client of every node, the sender included: the same broadcast as Switchboard's chat hub.
//
// Usage: node server.mjs --redis redis://127.0.0.1:6379 [--port 0]
// Prints `listening http://127.0.0.1:PORT` once it accepts clients; GET /stats answers
// `{"connections":N}` (this node's connected clients) for the orchestrator to wait on.
//
// Deployed as the Socket.IO documentation says for several nodes, with the defaults otherwise:
// - @socket.io/redis-adapter with node-redis 4: one publishing and one subscribing connection;
//   `io.emit` publishes each broadcast once on `socket.io#/#` and every node sends it to its own
//   clients (the publisher included, from its own call).
// - transports: ["websocket"]: without sticky sessions HTTP long-polling cannot work across
//   nodes, so a cluster without them allows WebSocket only (the clients here use nothing else).
// - perMessageDeflate is left at engine.io 6's default: off (no compression, as Switchboard).
// - Node's HTTP server sets TCP_NODELAY on accepted sockets by default (noDelay: true since
//   Node 18), as Switchboard does.

import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const { values: args } = parseArgs({
  options: {
    redis: { type: "string", default: process.env.REDIS_URL },
    port: { type: "string", default: process.env.PORT ?? "0" },
  },
});
if (!args.redis) {
  console.error("server.mjs: give --redis redis://host:port (or REDIS_URL)");
  process.exit(2);
}

const pubClient = createClient({ url: args.redis });
const subClient = pubClient.duplicate();
for (const client of [pubClient, subClient]) {
  client.on("error", (e) => console.error(`server.mjs: redis: ${e.message}`));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer((req, res) => {
  if (req.url === "/stats") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ connections: io.engine.clientsCount }));
  } else {
    res.statusCode = 404;
    res.end();
  }
});
const io = new Server(httpServer, {
  adapter: createAdapter(pubClient, subClient),
  transports: ["websocket"],
});
io.on("connection", (socket) => {
  socket.on("SendMessage", (user, message) => io.emit("ReceiveMessage", user, message));
});

httpServer.listen(Number(args.port), "127.0.0.1", () => {
  console.log(`listening http://127.0.0.1:${httpServer.address().port}`);
});
