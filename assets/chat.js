// Switchboard chat page: a small, dependency-free client of the SignalR JSON hub protocol and
// the UI around it. Served by the hub node at `/`; every URL is relative to the page's origin.
//
// Protocol summary (see ASP.NET Core SignalR's HubProtocol): POST {hub}/negotiate?negotiateVersion=1,
// open a WebSocket to {hub}?id=TOKEN, send {"protocol":"json","version":1}<RS>, wait for {}<RS>,
// then exchange JSON messages each terminated by the record separator RS (0x1E).

const HUB_PATH = "/chat";
const STATS_PATH = "/switchboard/stats";
const RS = "\x1e";

/** Message types of the hub protocol that this client handles. */
const MessageType = Object.freeze({
  Invocation: 1,
  StreamItem: 2,
  Completion: 3,
  Ping: 6,
  Close: 7,
});

/** Delays before each reconnect attempt, as the official client's default automatic reconnect. */
const RECONNECT_DELAYS_MS = [0, 2_000, 10_000, 30_000];
/** How often we ping the server: the server's client timeout is 30 s, so 15 s leaves a margin. */
const KEEP_ALIVE_MS = 15_000;
/** Silence after which the connection counts as lost: twice the server's 15 s keep-alive. */
const SERVER_TIMEOUT_MS = 30_000;
/** The server's own handshake timeout; waiting longer would be pointless. */
const HANDSHAKE_TIMEOUT_MS = 15_000;
/** How often the node panel refreshes from the stats endpoint. */
const STATS_REFRESH_MS = 5_000;
/** Messages and notes kept on screen; older ones are dropped so a long demo stays fast. */
const MAX_LIST_ITEMS = 500;

// ---------------------------------------------------------------------------------------------
// The hub connection
// ---------------------------------------------------------------------------------------------

/** Describes why a WebSocket closed, for the status line. */
function describeClose(event) {
  if (event.code === 1000) return "the server closed the connection";
  if (event.code === 1006) return "the connection dropped";
  return `the connection closed (code ${event.code}${event.reason ? `: ${event.reason}` : ""})`;
}

/**
 * A SignalR connection over WebSockets with the JSON hub protocol.
 *
 * States: "connecting" → "connected" → ("reconnecting" → "connected")* → "disconnected".
 * A lost connection is retried after each delay in RECONNECT_DELAYS_MS; a server Close without
 * allowReconnect, or running out of attempts, ends in "disconnected" with the reason.
 */
class HubConnection {
  #path;
  #userFn;
  #tokenFn = () => "";
  #handlers = new Map();
  #stateListeners = new Set();
  #state = "disconnected";
  #stopped = true;
  #ws = null;
  #buffer = "";
  #pending = new Map();
  #nextInvocationId = 0;
  #pingTimer = null;
  #silenceTimer = null;
  #reconnectTimer = null;
  #attempt = 0;

  /** @param {string} path hub path; @param {() => string} userFn the user id for the next connect */
  constructor(path, userFn) {
    this.#path = path;
    this.#userFn = userFn;
  }

  get state() {
    return this.#state;
  }

  /**
   * `tokenFn()` gives the access token for the next connect ("" for none), as the official
   * client's `accessTokenFactory`: sent as `Authorization: Bearer` on negotiate and as
   * `access_token` on the WebSocket URL (browsers cannot set headers on WebSockets).
   */
  setAccessTokenFactory(tokenFn) {
    this.#tokenFn = tokenFn;
  }

  /** Registers a handler for server-to-client invocations; targets match case-insensitively. */
  on(target, handler) {
    const key = target.toLowerCase();
    if (!this.#handlers.has(key)) this.#handlers.set(key, []);
    this.#handlers.get(key).push(handler);
  }

  /** `listener(state, detail)` is called on every state change. */
  onStateChange(listener) {
    this.#stateListeners.add(listener);
  }

  start() {
    this.#stopped = false;
    this.#attempt = 0;
    clearTimeout(this.#reconnectTimer);
    this.#connect("connecting");
  }

  /** Closes the connection for good (until the next `start`). */
  stop(reason = "stopped") {
    this.#stopped = true;
    clearTimeout(this.#reconnectTimer);
    this.#teardown(reason);
    this.#setState("disconnected", { reason, deliberate: true });
  }

  /** Calls a hub method and resolves with its result (or rejects with the server's error). */
  invoke(target, ...args) {
    if (this.#state !== "connected") {
      return Promise.reject(new Error("Not connected to the hub."));
    }
    const invocationId = String(this.#nextInvocationId++);
    return new Promise((resolve, reject) => {
      this.#pending.set(invocationId, { resolve, reject });
      this.#write({ type: MessageType.Invocation, invocationId, target, arguments: args });
    });
  }

  #setState(state, detail = {}) {
    this.#state = state;
    for (const listener of this.#stateListeners) listener(state, detail);
  }

  async #connect(state, reason) {
    this.#setState(state, { attempt: this.#attempt, reason });
    try {
      await this.#open();
    } catch (error) {
      if (error.unauthorized !== undefined) {
        // Retrying with the same token cannot help: stop and let the page ask for one.
        this.#stopped = true;
        this.#teardown(error.message);
        this.#setState("disconnected", { reason: error.message, unauthorized: error.unauthorized });
        return;
      }
      this.#lost(error.message, true);
      return;
    }
    if (this.#stopped) {
      this.#teardown("stopped");
      return;
    }
    this.#attempt = 0;
    this.#setState("connected");
  }

  /** Negotiates, opens the WebSocket and completes the handshake; then attaches the receive loop. */
  async #open() {
    const user = this.#userFn();
    const accessToken = this.#tokenFn();
    const negotiateUrl = new URL(`${this.#path}/negotiate`, location.origin);
    negotiateUrl.search = new URLSearchParams({ negotiateVersion: "1", user }).toString();
    let response;
    try {
      response = await fetch(negotiateUrl, {
        method: "POST",
        headers: accessToken ? { Authorization: `Bearer ${accessToken}` } : {},
        signal: AbortSignal.timeout(HANDSHAKE_TIMEOUT_MS),
      });
    } catch {
      throw new Error("cannot reach the node");
    }
    if (response.status === 401) {
      // The node requires a token (`--auth jwt`): its one-line reason says what was wrong.
      const reason = (await response.text().catch(() => "")).trim() || "a token is required";
      const error = new Error(`the node requires an access token: ${reason}`);
      error.unauthorized = reason;
      throw error;
    }
    if (!response.ok) throw new Error(`negotiate failed with HTTP ${response.status}`);
    const negotiation = await response.json();
    if (negotiation.error) throw new Error(`negotiate refused: ${negotiation.error}`);
    if (negotiation.url) throw new Error("the node asked for a redirect, which this page does not follow");
    const transports = negotiation.availableTransports ?? [];
    if (!transports.some((t) => t.transport === "WebSockets")) {
      throw new Error("the node does not offer WebSockets");
    }
    // Version 1 answers carry a separate secret token; version 0 uses the connection id.
    const token = negotiation.connectionToken ?? negotiation.connectionId;

    const wsUrl = new URL(this.#path, location.origin);
    wsUrl.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const query = { id: token, user };
    if (accessToken) query.access_token = accessToken;
    wsUrl.search = new URLSearchParams(query).toString();

    const ws = new WebSocket(wsUrl);
    this.#ws = ws;
    const rest = await new Promise((resolve, reject) => {
      let buffer = "";
      const fail = (error) => {
        clearTimeout(timer);
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        ws.close();
        if (this.#ws === ws) this.#ws = null;
        reject(error);
      };
      const timer = setTimeout(() => fail(new Error("the handshake timed out")), HANDSHAKE_TIMEOUT_MS);
      ws.onopen = () => ws.send(JSON.stringify({ protocol: "json", version: 1 }) + RS);
      ws.onerror = () => {}; // onclose follows with the details
      ws.onclose = (event) => fail(new Error(`${describeClose(event)} during the handshake`));
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") return fail(new Error("binary frame during a JSON handshake"));
        buffer += event.data;
        const end = buffer.indexOf(RS);
        if (end < 0) return;
        let answer;
        try {
          answer = JSON.parse(buffer.slice(0, end));
        } catch {
          return fail(new Error("the handshake response is not JSON"));
        }
        if (answer.error) return fail(new Error(`handshake refused: ${answer.error}`));
        if (answer.type !== undefined) return fail(new Error("expected a handshake response"));
        clearTimeout(timer);
        resolve(buffer.slice(end + 1));
      };
    });

    this.connectionId = negotiation.connectionId ?? null;
    this.#buffer = "";
    ws.onmessage = (event) => this.#receive(ws, event.data);
    ws.onclose = (event) => {
      if (this.#ws === ws) this.#lost(describeClose(event), true);
    };
    this.#pingTimer = setInterval(() => this.#write({ type: MessageType.Ping }), KEEP_ALIVE_MS);
    this.#resetSilenceTimer();
    if (rest) this.#receive(ws, rest);
  }

  #resetSilenceTimer() {
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(
      () => this.#lost(`no message from the server for ${SERVER_TIMEOUT_MS / 1000} s`, true),
      SERVER_TIMEOUT_MS,
    );
  }

  #write(message) {
    if (this.#ws?.readyState === WebSocket.OPEN) {
      this.#ws.send(JSON.stringify(message) + RS);
    }
  }

  /** Appends a chunk of the text stream and handles every complete record in it. */
  #receive(ws, data) {
    if (ws !== this.#ws) return;
    if (typeof data !== "string") {
      this.#lost("the server sent a binary frame on a JSON connection", true);
      return;
    }
    this.#resetSilenceTimer();
    this.#buffer += data;
    const records = this.#buffer.split(RS);
    this.#buffer = records.pop(); // the incomplete tail, often ""
    for (const record of records) {
      if (ws !== this.#ws) return; // a Close in this batch ended the connection
      let message;
      try {
        message = JSON.parse(record);
      } catch {
        this.#lost("the server sent a message that is not JSON", true);
        return;
      }
      this.#handle(message);
    }
  }

  #handle(message) {
    switch (message.type) {
      case MessageType.Invocation: {
        const handlers = this.#handlers.get(String(message.target).toLowerCase()) ?? [];
        for (const handler of handlers) {
          try {
            handler(...(message.arguments ?? []));
          } catch (error) {
            console.error(`handler for ${message.target} failed`, error);
          }
        }
        if (message.invocationId) {
          // The server wants a client result; this page never provides one.
          this.#write({
            type: MessageType.Completion,
            invocationId: message.invocationId,
            error: "Client didn't provide a result.",
          });
        }
        break;
      }
      case MessageType.Completion: {
        const pending = this.#pending.get(message.invocationId);
        if (!pending) break;
        this.#pending.delete(message.invocationId);
        if (message.error) pending.reject(new Error(message.error));
        else pending.resolve(message.result);
        break;
      }
      case MessageType.Ping:
        break; // receiving it already reset the silence timer
      case MessageType.Close: {
        const reason = message.error
          ? `the server closed the connection: ${message.error}`
          : "the server closed the connection";
        this.#lost(reason, message.allowReconnect === true);
        break;
      }
      default:
        break; // stream items and unknown types are ignored, as the protocol asks
    }
  }

  /** Closes the socket and fails every pending invocation. */
  #teardown(reason) {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#silenceTimer);
    const ws = this.#ws;
    this.#ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
    for (const { reject } of this.#pending.values()) reject(new Error(`Connection lost: ${reason}`));
    this.#pending.clear();
    this.connectionId = null;
  }

  #lost(reason, allowReconnect) {
    this.#teardown(reason);
    if (this.#stopped) return;
    if (!allowReconnect || this.#attempt >= RECONNECT_DELAYS_MS.length) {
      this.#setState("disconnected", { reason });
      return;
    }
    const delay = RECONNECT_DELAYS_MS[this.#attempt];
    this.#attempt += 1;
    this.#setState("reconnecting", { reason, delay, attempt: this.#attempt });
    this.#reconnectTimer = setTimeout(() => this.#connect("reconnecting", reason), delay);
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/** FNV-1a: a stable hash, so a name always gets the same color in every window. */
function hash(text) {
  let h = 0x811c9dc5;
  for (const ch of text) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * Node badge colors. Eight entries: with FNV-1a, names that differ only in their last letter or
 * digit ("node-a", "node-b", …) land on different entries.
 */
const NODE_COLORS = ["#2563eb", "#d9480f", "#0f8a4f", "#8e44ad", "#c2255c", "#0b7f86", "#a8650b", "#4f46e5"];

function nodeColor(name) {
  return NODE_COLORS[hash(name) % NODE_COLORS.length];
}

function userColor(name) {
  return `hsl(${hash(name) % 360} 55% 40%)`;
}

function $(id) {
  return document.getElementById(id);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatTime(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function formatUptime(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A per-tab name: sessionStorage keeps it across reloads without two tabs sharing one. */
function initialName() {
  const saved = sessionStorage.getItem("switchboard.name");
  if (saved) return saved;
  return `guest-${String(Math.floor(1000 + Math.random() * 9000))}`;
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

const ui = {
  badge: $("node-badge"),
  serverName: $("server-name"),
  nodeUrl: $("node-url"),
  conn: $("conn"),
  connText: $("conn-text"),
  retry: $("conn-retry"),
  name: $("name"),
  group: $("group"),
  join: $("join"),
  leave: $("leave"),
  groups: $("groups"),
  groupsEmpty: $("groups-empty"),
  messages: $("messages"),
  messagesEmpty: $("messages-empty"),
  composer: $("composer"),
  message: $("message"),
  send: $("send"),
  sendGroup: $("send-group"),
  stats: {
    connections: $("stat-connections"),
    groups: $("stat-groups"),
    users: $("stat-users"),
    backplane: $("stat-backplane"),
    uptime: $("stat-uptime"),
    connectionId: $("stat-connection-id"),
  },
};

let userName = initialName();
ui.name.value = userName;
sessionStorage.setItem("switchboard.name", userName);

/** Groups this page joined; rejoined after every reconnect (the server forgets them). */
const joinedGroups = new Set();
/**
 * Group messages this page sent and has not seen come back yet, as "user\ntext" → group.
 * ReceiveMessage does not say whether a message went to a group; for our own sends we know.
 */
const ownGroupSends = new Map();
/** Group sends remembered at most: a send to a group we are not in never comes back. */
const OWN_GROUP_SENDS_MAX = 50;

const hub = new HubConnection(HUB_PATH, () => userName);

// --- access token (nodes started with --auth jwt) -------------------------------------------

/**
 * The token comes from the URL fragment (`#access_token=…`, never sent to any server by the
 * browser) or from the token field, which appears when the node answers 401. Kept in this tab's
 * sessionStorage only; the fragment is removed from the address bar once read.
 */
let accessToken = sessionStorage.getItem("switchboard.accessToken") ?? "";
{
  const fragment = new URLSearchParams(location.hash.slice(1));
  const fromFragment = fragment.get("access_token");
  if (fromFragment) {
    accessToken = fromFragment.trim();
    sessionStorage.setItem("switchboard.accessToken", accessToken);
    history.replaceState(null, "", location.pathname + location.search);
  }
}
hub.setAccessTokenFactory(() => accessToken);

const tokenUi = {
  panel: $("token-panel"),
  field: $("token"),
  use: $("token-use"),
  reason: $("token-reason"),
};

function showTokenField(reason) {
  tokenUi.panel.hidden = false;
  tokenUi.reason.textContent = `The node refused the connection: ${reason}`;
  tokenUi.field.focus();
}

tokenUi.use.addEventListener("click", () => {
  accessToken = tokenUi.field.value.trim();
  tokenUi.field.value = "";
  sessionStorage.setItem("switchboard.accessToken", accessToken);
  hub.start();
});
tokenUi.field.addEventListener("keydown", (event) => {
  if (event.key === "Enter") tokenUi.use.click();
});

// --- messages -------------------------------------------------------------------------------

function appendItem(item) {
  const list = ui.messages;
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  list.append(item);
  while (list.children.length > MAX_LIST_ITEMS) list.firstElementChild.remove();
  ui.messagesEmpty.hidden = true;
  if (nearBottom) list.scrollTop = list.scrollHeight;
}

/**
 * The Switchboard dashboard appends a trace marker, "[sb-trace 1a2b]", to its test messages so it
 * can follow them through Redis. It is for the dashboard, not for people: the page strips it and
 * tags the message as a test instead.
 */
const TRACE_MARKER = /\s*\[sb-trace [0-9a-f]{1,16}\]/g;

function stripTraceMarker(text) {
  const stripped = text.replace(TRACE_MARKER, "");
  return { text: stripped, traced: stripped !== text };
}

function addMessage(user, rawText, group) {
  const { text, traced } = stripTraceMarker(rawText);
  const mine = user === userName;
  const item = el("li", `message${mine ? " mine" : ""}${group ? " group" : ""}`);
  const head = el("div", "message-head");
  const who = el("span", "message-user", user);
  who.style.color = userColor(user);
  head.append(who);
  if (group) {
    const tag = el("span", "message-group", `# ${group}`);
    tag.title = `Sent to group ${group}`;
    head.append(tag);
  }
  if (traced) {
    const tag = el("span", "message-group", "test");
    tag.title = "A traced test message from the Switchboard dashboard";
    head.append(tag);
  }
  head.append(el("time", "message-time", formatTime(new Date())));
  item.append(head, el("div", "message-text", text));
  appendItem(item);
}

function addNote(text, kind = "info") {
  const item = el("li", `note note-${kind}`);
  item.append(el("span", "note-time", formatTime(new Date())), el("span", "note-text", text));
  appendItem(item);
}

/**
 * ReceiveMessage(user, message) is what the hub sends. A third string argument, or a
 * ReceiveGroupMessage(group, user, message) target, is understood as a group name if a hub sends it.
 */
hub.on("ReceiveMessage", (user, message, group) => {
  const key = `${user}\n${message}`;
  let groupName = typeof group === "string" ? group : undefined;
  if (groupName === undefined && ownGroupSends.has(key)) {
    groupName = ownGroupSends.get(key);
    ownGroupSends.delete(key);
  }
  addMessage(String(user), String(message), groupName);
});
hub.on("ReceiveGroupMessage", (group, user, message) => {
  addMessage(String(user), String(message), String(group));
});

// --- connection state -----------------------------------------------------------------------

const STATE_TEXT = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  disconnected: "Disconnected",
};

let wasConnected = false;

hub.onStateChange((state, detail) => {
  ui.conn.dataset.state = state;
  let text = STATE_TEXT[state];
  if (state === "reconnecting" && detail.reason) {
    const wait = detail.delay ? ` in ${detail.delay / 1000} s` : "";
    text = `Reconnecting${wait} (attempt ${detail.attempt} of ${RECONNECT_DELAYS_MS.length}) — ${detail.reason}`;
  } else if (state === "disconnected" && detail.reason) {
    text = `Disconnected — ${detail.reason}`;
  }
  if (detail.unauthorized !== undefined) showTokenField(detail.unauthorized);
  if (state === "connected" && accessToken) tokenUi.panel.hidden = true;
  ui.connText.textContent = text;
  ui.conn.title = text;
  ui.retry.hidden = state !== "disconnected";
  const connected = state === "connected";
  for (const control of [ui.send, ui.sendGroup, ui.join, ui.leave]) control.disabled = !connected;

  if (connected) {
    onConnected();
  } else if (wasConnected && state !== "connecting") {
    wasConnected = false;
    ui.stats.connectionId.textContent = "–";
    if (!detail.deliberate) addNote(`Connection lost: ${detail.reason ?? "unknown reason"}`, "warn");
  }
});

async function onConnected() {
  wasConnected = true;
  addNote(`Connected as ${userName}.`);
  try {
    ui.stats.connectionId.textContent = await hub.invoke("GetConnectionId");
  } catch {
    ui.stats.connectionId.textContent = hub.connectionId ?? "–";
  }
  for (const group of joinedGroups) {
    try {
      await hub.invoke("JoinGroup", group);
      addNote(`Rejoined group ${group}.`);
    } catch (error) {
      addNote(`Could not rejoin group ${group}: ${error.message}`, "error");
    }
  }
  // A reconnect may have landed on a restarted node with a new server name.
  refreshStats();
}

ui.retry.addEventListener("click", () => hub.start());

// --- name -----------------------------------------------------------------------------------

function applyName() {
  const name = ui.name.value.trim();
  if (!name) {
    ui.name.value = userName;
    return;
  }
  if (name === userName) return;
  userName = name;
  sessionStorage.setItem("switchboard.name", name);
  addNote(`You are now ${name}; reconnecting so the hub knows your new user id.`);
  hub.stop("name changed");
  hub.start();
}

ui.name.addEventListener("change", applyName);
ui.name.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    ui.name.blur();
  }
});

// --- groups ---------------------------------------------------------------------------------

function renderGroups() {
  ui.groups.replaceChildren();
  for (const group of joinedGroups) {
    const chip = el("li", "chip");
    const button = el("button", "chip-button", `# ${group}`);
    button.type = "button";
    button.title = `Use group ${group}`;
    button.addEventListener("click", () => {
      ui.group.value = group;
      ui.message.focus();
    });
    chip.append(button);
    ui.groups.append(chip);
  }
  ui.groupsEmpty.hidden = joinedGroups.size > 0;
}

function groupName() {
  const group = ui.group.value.trim();
  if (!group) {
    addNote("Type a group name first.", "warn");
    ui.group.focus();
  }
  return group;
}

ui.join.addEventListener("click", async () => {
  const group = groupName();
  if (!group) return;
  try {
    await hub.invoke("JoinGroup", group);
    joinedGroups.add(group);
    renderGroups();
    refreshStats(); // the node's group count changed
    addNote(`Joined group ${group}.`);
  } catch (error) {
    addNote(`Could not join ${group}: ${error.message}`, "error");
  }
});

ui.leave.addEventListener("click", async () => {
  const group = groupName();
  if (!group) return;
  try {
    await hub.invoke("LeaveGroup", group);
    joinedGroups.delete(group);
    renderGroups();
    refreshStats();
    addNote(`Left group ${group}.`);
  } catch (error) {
    addNote(`Could not leave ${group}: ${error.message}`, "error");
  }
});

ui.group.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    ui.join.click();
  }
});

// --- sending --------------------------------------------------------------------------------

async function send(toGroup) {
  const text = ui.message.value.trim();
  if (!text) return;
  const group = toGroup ? groupName() : "";
  if (toGroup && !group) return;
  // Clear at once so the next message can be typed while this one is on its way.
  ui.message.value = "";
  ui.message.focus();
  try {
    if (toGroup) {
      ownGroupSends.set(`${userName}\n${text}`, group);
      if (ownGroupSends.size > OWN_GROUP_SENDS_MAX) ownGroupSends.delete(ownGroupSends.keys().next().value);
      await hub.invoke("SendToGroup", group, userName, text);
    } else {
      await hub.invoke("SendMessage", userName, text);
    }
  } catch (error) {
    addNote(`Not sent: ${error.message}`, "error");
    if (!ui.message.value) ui.message.value = text; // give the text back to retry
  }
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  send(false);
});
ui.sendGroup.addEventListener("click", () => send(true));

// --- node info ------------------------------------------------------------------------------

function showNode(stats) {
  nodePanel.dataset.stale = "false";
  const name = String(stats.node_name ?? "unknown node");
  const color = nodeColor(name);
  document.documentElement.style.setProperty("--node-color", color);
  ui.badge.textContent = name;
  ui.serverName.textContent = String(stats.server_name ?? "");
  ui.serverName.title = "Backplane server name";
  ui.nodeUrl.textContent = stats.url ? String(stats.url) : location.origin;
  document.title = `${name} · Switchboard chat`;
  setFavicon(color);

  const connections = stats.connections ?? {};
  ui.stats.connections.textContent = String(connections.total ?? "–");
  ui.stats.connections.title = `JSON: ${connections.json ?? "?"}, MessagePack: ${connections.messagepack ?? "?"}`;
  ui.stats.groups.textContent = String(stats.groups ?? "–");
  ui.stats.users.textContent = String(stats.users ?? "–");
  const backplane = stats.backplane ?? {};
  const backplaneState = backplane.state ?? backplane.status?.state;
  ui.stats.backplane.textContent = [backplane.kind, backplaneState].filter(Boolean).join(" · ") || "–";
  ui.stats.backplane.dataset.state = String(backplaneState ?? "").toLowerCase();
  ui.stats.uptime.textContent = formatUptime(Number(stats.uptime_s));
}

const nodePanel = document.querySelector(".node-panel");
let faviconColor = null;

/** A round favicon in the node's color, so the tabs of two nodes differ too. */
function setFavicon(color) {
  if (color === faviconColor) return;
  faviconColor = color;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><circle cx="8" cy="8" r="7" fill="${color}"/></svg>`;
  let link = document.querySelector("link[rel=icon]");
  if (!link) {
    link = document.createElement("link");
    link.rel = "icon";
    document.head.append(link);
  }
  link.href = `data:image/svg+xml,${encodeURIComponent(svg)}`;
}

async function refreshStats() {
  try {
    const response = await fetch(new URL(STATS_PATH, location.origin), {
      cache: "no-store",
      signal: AbortSignal.timeout(STATS_REFRESH_MS),
    });
    if (response.status === 401 || response.status === 403) {
      // The node keeps its monitor endpoints to monitors (--monitor-token, or loopback clients
      // only): the chat works, only the node's numbers stay hidden. Not an outage.
      ui.stats.uptime.textContent = "node details are for monitors only";
      if (ui.badge.textContent === "…") ui.serverName.textContent = `node details are not public (HTTP ${response.status})`;
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    showNode(await response.json());
  } catch (error) {
    // Keep the last known identity in the header, but do not show old numbers as current.
    nodePanel.dataset.stale = "true";
    ui.stats.uptime.textContent = "node unreachable";
    if (ui.badge.textContent === "…") ui.serverName.textContent = `node info unavailable (${error.message})`;
  }
}

// --- start ----------------------------------------------------------------------------------

renderGroups();
refreshStats();
setInterval(refreshStats, STATS_REFRESH_MS);
hub.start();
ui.message.focus();
