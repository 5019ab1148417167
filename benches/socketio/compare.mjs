// Switchboard hub nodes against Socket.IO + redis-adapter nodes on the same load, in one run:
// node CPU per delivery (and the ratio Socket.IO / Switchboard), p99 per path, and the drivers'
// share of the tail. Started by scripts/socketio-compare.sh, which documents the knobs.
//
// One private redis-server on a free loopback port serves every row. Per run and per row (target
// × driver): two fresh nodes of the target on that Redis, a driver with SIO_CLIENTS clients
// alternating across them, broadcasting at SIO_RATE deliveries/s for SIO_DURATION s. When the
// nodes count every client, and a second more, the window opens; it closes SIO_DURATION − 2 s
// later, a second before the senders stop. Over the window: /proc/PID/stat utime and stime of
// both node processes (and of redis-server, shown apart) over the deliveries made. Then the
// driver's report (loss; p99 per path over the window, and over the whole sending phase, whose
// first second holds a JIT-compiled node's warm-up), and the nodes are stopped.
//
// Drivers: `official` and `raw` are driver.mjs (JavaScript, deliveries and CPU from its "mark"
// answers); `lean` is our Rust `switchboard load`, against Switchboard only (deliveries are the
// nodes' client_out, its CPU from /proc; its report has the whole phase's p99 only): the same
// nodes under a cheaper driver show how much of the JavaScript drivers' tail is their own.
//
// Every process shares the machine's cores, so a build next to the benchmark changes its figures:
// each row also reports what other processes spent over its window (/proc/stat's busy time minus
// ours), waits for a quiet machine before it starts, is measured again when disturbed anyway, and
// stays flagged DISTURBED when it was every time.
//
// Everything is bounded: each step has a timeout, the whole a budget, and every child process
// (redis-server, nodes, drivers) is killed at the end, on error and on SIGINT/SIGTERM.

import { execFileSync, fork, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "../..");

const { values: cli } = parseArgs({ options: { help: { type: "boolean", short: "h" } } });
if (cli.help) {
  console.log("Usage: scripts/socketio-compare.sh (knobs in its header: SIO_RUNS, SIO_CLIENTS, SIO_RATE, ...)");
  process.exit(0);
}

const RUNS = intEnv("SIO_RUNS", 3);
const CLIENTS = intEnv("SIO_CLIENTS", 200);
const SENDERS = 10;
const RATE = intEnv("SIO_RATE", 40_000);
const DURATION_S = intEnv("SIO_DURATION", 10);
const CLIENT_KINDS = { official: ["official"], raw: ["raw"], both: ["official", "raw"] }[process.env.SIO_CLIENT ?? "official"];
const LEAN = (process.env.SIO_LEAN ?? "1") !== "0";
const BIN = path.resolve(process.env.SWITCHBOARD_BIN ?? path.join(REPO, "target/release/switchboard"));
const HUB_ARGS = (process.env.SIO_HUB_ARGS ?? "").split(/\s+/).filter(Boolean);

/** A node prints its URL within this (Switchboard in milliseconds, Socket.IO in well under 2 s). */
const START_TIMEOUT_MS = 15_000;
/** Every client connects within this, or the row fails (a loopback connect takes milliseconds). */
const CONNECT_TIMEOUT_MS = 30_000;
/** After sending, the driver drains 1 s and closes its clients: its report comes well within this. */
const REPORT_TIMEOUT_MS = 20_000;
/**
 * Other processes' CPU (% of a core) past which the machine is busy: quiet is ~2 %. A row starts
 * once the machine is quiet (or after QUIET_WAIT_MS); one that other processes disturbed anyway
 * is measured again, up to ATTEMPTS times, and the last attempt stays flagged when all were.
 */
const DISTURBED_PERCENT = 10;
const QUIET_WAIT_MS = 120_000;
const ATTEMPTS = 2;
/** A process asked to stop (SIGTERM) that is still there after this is killed. */
const STOP_TIMEOUT_MS = 5_000;

if (!CLIENT_KINDS) fail(`SIO_CLIENT must be official, raw or both (not ${process.env.SIO_CLIENT})`);
if (DURATION_S < 3) fail("SIO_DURATION must be 3 s or more: the window is the sending phase minus a second at each end");
if (!existsSync(BIN)) fail(`no switchboard binary at ${BIN} (set SWITCHBOARD_BIN, or run scripts/socketio-compare.sh)`);

const TICK_US = 1e6 / Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());
const ROWS = [
  ...CLIENT_KINDS.map((driver) => ({ target: "switchboard", driver })),
  ...(LEAN ? [{ target: "switchboard", driver: "lean" }] : []),
  ...CLIENT_KINDS.map((driver) => ({ target: "socketio", driver })),
];
const LABEL_WIDTH = Math.max(...ROWS.map((row) => label(row).length));

// Children: every process started here, killed on any way out.
const children = new Set();
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => fail(`stopped by ${signal}`));
const rowMs = QUIET_WAIT_MS + DURATION_S * 1000 + START_TIMEOUT_MS + CONNECT_TIMEOUT_MS + REPORT_TIMEOUT_MS;
const budgetMs = RUNS * ROWS.length * ATTEMPTS * rowMs + 60_000;
setTimeout(() => fail(`took longer than its budget of ${Math.round(budgetMs / 1000)} s`), budgetMs).unref();

try {
  await main();
  process.exit(0);
} catch (e) {
  fail(e.stack ?? String(e));
}

async function main() {
  const redis = await startRedis();
  console.log(
    `socketio-compare: ${CLIENTS} clients on 2 nodes, ${SENDERS} senders, ${RATE} deliveries/s for ${DURATION_S} s; ` +
      `node CPU over the middle ${DURATION_S - 2} s; ${RUNS} run(s); redis on ${redis.url}; ` +
      `${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(2)}`,
  );
  const results = ROWS.map(() => []);
  const ratios = Object.fromEntries(CLIENT_KINDS.map((k) => [k, []]));
  for (let run = 1; run <= RUNS; run++) {
    const figures = {};
    for (const [i, row] of ROWS.entries()) {
      let f;
      for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
        await machineQuiet();
        f = await measure(row, redis.url, redis.child.pid);
        if (f.othersCore < DISTURBED_PERCENT || attempt === ATTEMPTS) break;
        console.log(`run ${run}/${RUNS}  ${label(row).padEnd(LABEL_WIDTH)} disturbed (other processes ${Math.round(f.othersCore)} % of a core): again`);
      }
      results[i].push(f);
      figures[`${row.target}/${row.driver}`] = f;
      console.log(`run ${run}/${RUNS}  ${label(row).padEnd(LABEL_WIDTH)} ${line(f)}`);
    }
    const parts = CLIENT_KINDS.map((k) => {
      const ratio = figures[`socketio/${k}`].totalUs / figures[`switchboard/${k}`].totalUs;
      ratios[k].push(ratio);
      return `${k} ${ratio.toFixed(2)}×`;
    });
    console.log(`run ${run}/${RUNS}  Socket.IO / Switchboard, total node CPU per delivery: ${parts.join(", ")}`);
  }
  await stop(redis.child);

  const medians = results.map((fs) => medianFigures(fs));
  const ratioText = CLIENT_KINDS.map((k) => `${k} driver ${median(ratios[k]).toFixed(2)}×`).join(", ");
  console.log(`\nmedian of ${RUNS} run(s):`);
  for (const [i, row] of ROWS.entries()) console.log(`  ${label(row).padEnd(LABEL_WIDTH)} ${line(medians[i])}`);
  console.log(`  Socket.IO / Switchboard, total node CPU per delivery (median of the runs' ratios): ${ratioText}`);
  console.log(`  load average now ${os.loadavg()[0].toFixed(2)}\n`);
  console.log(markdown(medians, ratioText));
}

/** Until the machine spends under DISTURBED_PERCENT of a core in a second (at most QUIET_WAIT_MS). */
async function machineQuiet() {
  const deadline = performance.now() + QUIET_WAIT_MS;
  for (;;) {
    const before = machineBusyUs();
    await sleep(1000);
    if ((machineBusyUs() - before) / 1e4 < DISTURBED_PERCENT || performance.now() > deadline) return;
  }
}

/** One row of one run: fresh nodes, one driver, the window's figures. */
async function measure(row, redisUrl, redisPid) {
  const nodes = [];
  let driver = null;
  try {
    for (const i of [0, 1]) nodes.push(await startNode(row.target, i, redisUrl));
    driver = row.driver === "lean" ? startLean(nodes) : startDriver(row, nodes);
    await waitForClients(nodes, driver.child);
    await sleep(1000);
    const before = await sample(driver, nodes, redisPid);
    await sleep((DURATION_S - 2) * 1000);
    const after = await sample(driver, nodes, redisPid);
    const report = await withTimeout(driver.report, DURATION_S * 1000 + REPORT_TIMEOUT_MS, `the ${row.driver} driver's report`);
    const deliveries = Math.max(1, after.deliveries - before.deliveries);
    const userUs = (after.user - before.user) / deliveries;
    const systemUs = (after.system - before.system) / deliveries;
    const windowUs = (after.at - before.at) * 1000;
    const ours = ["user", "system", "redis", "driverCpuUs"].reduce((sum, k) => sum + after[k] - before[k], 0);
    return {
      deliveriesPerS: deliveries / ((after.at - before.at) / 1000),
      userUs,
      systemUs,
      totalUs: userUs + systemUs,
      redisUs: (after.redis - before.redis) / deliveries,
      driverCore: (100 * (after.driverCpuUs - before.driverCpuUs)) / ((after.driverAt - before.driverAt) * 1000),
      othersCore: Math.max(0, (100 * (after.machine - before.machine - ours)) / windowUs),
      ...report,
    };
  } finally {
    await Promise.all([...nodes.map((n) => stop(n.child)), driver && stop(driver.child)]);
  }
}

/**
 * Both nodes' CPU (µs), redis-server's, the driver's deliveries and CPU, and the whole machine's
 * busy CPU, at one moment: what the machine spent beyond those (a build, say) disturbs the row.
 */
async function sample(driver, nodes, redisPid) {
  const mark = await driver.mark();
  const s = { at: performance.now(), ...mark, user: 0, system: 0, redis: 0, machine: machineBusyUs() };
  for (const node of nodes) {
    const cpu = cpuUs(node.child.pid);
    s.user += cpu.user;
    s.system += cpu.system;
  }
  const redis = cpuUs(redisPid);
  s.redis = redis.user + redis.system;
  return s;
}

/** CPU time all cores spent neither idle nor waiting for I/O (the `cpu` line of /proc/stat), µs. */
function machineBusyUs() {
  const ticks = readFileSync("/proc/stat", "utf8").split("\n")[0].split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = ticks; // idle and iowait left out
  return (user + nice + system + irq + softirq + steal) * TICK_US;
}

/** utime and stime (fields 14 and 15 of /proc/PID/stat: every thread, live or ended) in µs. */
function cpuUs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { user: Number(fields[11]) * TICK_US, system: Number(fields[12]) * TICK_US };
}

async function startRedis() {
  const port = await freePort();
  const child = track(
    spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
      stdio: ["ignore", "ignore", "inherit"],
    }),
  );
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (!(await redisAnswers(port))) {
    if (child.exitCode !== null || performance.now() > deadline) throw new Error(`redis-server on port ${port} did not start`);
    await sleep(50);
  }
  return { child, url: `redis://127.0.0.1:${port}` };
}

function redisAnswers(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write("PING\r\n"));
    socket.setTimeout(1000, () => socket.destroy());
    socket.once("data", (data) => {
      resolve(data.toString().startsWith("+PONG"));
      socket.destroy();
    });
    socket.once("close", () => resolve(false));
    socket.once("error", () => resolve(false));
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.once("error", reject);
  });
}

/** A node on 127.0.0.1:0, with its URL (from stdout) and how to read its client count. */
async function startNode(target, i, redisUrl) {
  if (target === "switchboard") {
    const child = track(
      spawn(BIN, ["hub", "--listen", "127.0.0.1:0", "--name", `sio-compare-${i}`, "--redis", redisUrl, ...HUB_ARGS], {
        env: { ...process.env, RUST_LOG: "warn" },
        stdio: ["ignore", "pipe", "inherit"],
      }),
    );
    const url = await printed(child, /hub (http:\/\/\S+\/chat)/, `switchboard node ${i}`);
    return {
      child,
      url,
      stats: async () => {
        const stats = await (await fetch(`${url.replace(/\/chat$/, "")}/switchboard/stats`)).json();
        return { clients: stats.connections.json + stats.connections.messagepack, clientOut: stats.messages.client_out };
      },
    };
  }
  const child = track(
    spawn(process.execPath, [path.join(HERE, "server.mjs"), "--redis", redisUrl, "--port", "0"], {
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  const url = await printed(child, /listening (http:\/\/\S+)/, `socket.io node ${i}`);
  return { child, url, stats: async () => ({ clients: (await (await fetch(`${url}/stats`)).json()).connections }) };
}

/** The first capture of `pattern` in the child's stdout (whose later lines are read and dropped). */
function printed(child, pattern, name) {
  return withTimeout(
    new Promise((resolve, reject) => {
      createInterface({ input: child.stdout }).on("line", (l) => {
        const m = l.match(pattern);
        if (m) resolve(m[1]);
      });
      child.once("exit", (code) => reject(new Error(`${name} exited (${code}) before it listened`)));
    }),
    START_TIMEOUT_MS,
    `${name}'s URL`,
  );
}

/** driver.mjs, forked: "mark" answers come back over IPC in the order asked. */
function startDriver(row, nodes) {
  const args = ["--target", row.target, "--client", row.driver, ...nodes.flatMap((n) => ["--node", n.url])];
  args.push("--clients", String(CLIENTS), "--senders", String(SENDERS), "--rate", String(RATE), "--duration", String(DURATION_S));
  const child = track(fork(path.join(HERE, "driver.mjs"), args, { stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  const marks = [];
  const report = new Promise((resolve, reject) => {
    child.on("message", (m) => {
      if (m.kind === "mark") marks.shift()(m);
      if (m.kind === "report") resolve(m);
    });
    child.once("exit", (code) => reject(new Error(`the ${row.driver} driver exited (${code}) without a report`)));
  });
  report.catch(() => {}); // awaited later; a driver that dies early must not crash us before then
  return {
    child,
    mark: () =>
      withTimeout(
        new Promise((resolve) => {
          marks.push(resolve);
          child.send("mark");
        }),
        5000,
        "the driver's mark",
      ).then((m) => ({ deliveries: m.received, driverCpuUs: m.cpu.user + m.cpu.system, driverAt: m.at })),
    report: report.then((r) => ({
      lost: r.lost,
      duplicates: r.duplicates,
      failures: r.connect_failures + r.disconnected_early,
      crossCount: r.cross_node.count,
      windowP99: [r.window.cross_node.p99_ms, r.window.same_node.p99_ms],
      wholeP99: [r.cross_node.p99_ms, r.same_node.p99_ms],
    })),
  };
}

/** `switchboard load`: deliveries from the nodes' client_out, its CPU from /proc, its JSON report. */
function startLean(nodes) {
  const args = ["load", ...nodes.flatMap((n) => ["--node", n.url])];
  args.push("--clients", String(CLIENTS), "--senders", String(SENDERS), "--rate", String(RATE), "--duration", String(DURATION_S));
  args.push("--protocol", "json", "--skip-negotiation", "--drain", "1", "--json", "--quiet");
  const child = track(spawn(BIN, args, { stdio: ["ignore", "pipe", "inherit"] }));
  let stdout = "";
  child.stdout.on("data", (d) => (stdout += d));
  const report = new Promise((resolve, reject) => {
    child.once("exit", (code) => {
      try {
        resolve(JSON.parse(stdout)); // exit 1 with shortfalls still prints the report
      } catch {
        reject(new Error(`switchboard load exited (${code}) without a JSON report`));
      }
    });
  });
  report.catch(() => {});
  return {
    child,
    mark: async () => {
      const cpu = cpuUs(child.pid);
      const stats = await Promise.all(nodes.map((n) => n.stats()));
      return {
        deliveries: stats.reduce((sum, s) => sum + s.clientOut, 0),
        driverCpuUs: cpu.user + cpu.system,
        driverAt: performance.now(),
      };
    },
    report: report.then((r) => ({
      lost: r.lost,
      duplicates: r.duplicates,
      failures: r.connect_failures + r.disconnected_early,
      crossCount: r.cross_node.count,
      windowP99: [null, null],
      wholeP99: [r.cross_node.p99_ms, r.same_node.p99_ms],
    })),
  };
}

/** Until both nodes count every client; fails when the driver ends or the connect timeout passes. */
async function waitForClients(nodes, driverChild) {
  const deadline = performance.now() + CONNECT_TIMEOUT_MS;
  let clients = 0;
  while (clients < CLIENTS) {
    if (driverChild.exitCode !== null) throw new Error(`the driver exited (${driverChild.exitCode}) while connecting`);
    if (performance.now() > deadline) throw new Error(`only ${clients} of ${CLIENTS} clients connected in ${CONNECT_TIMEOUT_MS / 1000} s`);
    await sleep(20);
    const counts = await Promise.all(nodes.map((n) => n.stats().then((s) => s.clients, () => 0)));
    clients = counts[0] + counts[1];
  }
}

/** Registers a child process for the kill on the way out. */
function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** SIGTERM, then SIGKILL after STOP_TIMEOUT_MS; resolves once the process is gone. */
async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function label(row) {
  const target = row.target === "switchboard" ? "Switchboard" : "Socket.IO";
  return `${target} ← ${row.driver === "lean" ? "switchboard load" : `${row.driver} JS`}`;
}

function ms(value) {
  return value == null ? "–" : value.toFixed(1);
}

/** "cross / same ms" of a p99 pair. */
function p99(pair) {
  return pair[0] == null && pair[1] == null ? "–" : `${ms(pair[0])} / ${ms(pair[1])} ms`;
}

function line(f) {
  const warning =
    (f.crossCount === 0 ? "  NO CROSS-NODE DELIVERY" : "") +
    (f.othersCore >= DISTURBED_PERCENT ? "  DISTURBED: other processes used the CPU" : "");
  return (
    `${Math.round(f.deliveriesPerS)} deliveries/s · node ${f.userUs.toFixed(2)} user + ${f.systemUs.toFixed(2)} kernel = ` +
    `${f.totalUs.toFixed(2)} µs/delivery (redis ${f.redisUs.toFixed(2)}) · p99 cross / same: window ${p99(f.windowP99)}, ` +
    `whole ${p99(f.wholeP99)} · driver ${Math.round(f.driverCore)} % of a core, other processes ${Math.round(f.othersCore)} % · ` +
    `lost ${f.lost}, dup ${f.duplicates}, failed clients ${f.failures}${warning}`
  );
}

/** Each figure's median over the runs (each figure on its own, so not one run's row). */
function medianFigures(runs) {
  const m = (get) => median(runs.map(get));
  return {
    deliveriesPerS: m((f) => f.deliveriesPerS),
    userUs: m((f) => f.userUs),
    systemUs: m((f) => f.systemUs),
    totalUs: m((f) => f.totalUs),
    redisUs: m((f) => f.redisUs),
    driverCore: m((f) => f.driverCore),
    othersCore: m((f) => f.othersCore),
    lost: m((f) => f.lost),
    duplicates: m((f) => f.duplicates),
    failures: m((f) => f.failures),
    crossCount: m((f) => f.crossCount),
    windowP99: [m((f) => f.windowP99[0]), m((f) => f.windowP99[1])],
    wholeP99: [m((f) => f.wholeP99[0]), m((f) => f.wholeP99[1])],
  };
}

/** The median (the upper one of an even count), as benches/support's `median`. */
function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function markdown(medians, ratioText) {
  const head = [
    `${CLIENTS} clients on 2 nodes sharing one Redis, ${SENDERS} senders, ${RATE} deliveries/s; median of ${RUNS} run(s); ` +
      `node CPU = utime + stime of both node processes over the middle ${DURATION_S - 2} s, per delivery; ` +
      `p99 = send → receipt in the driver, cross-node / same-node, over the same window and over the whole sending phase ` +
      `(\`switchboard load\` reports the latter only); driver CPU in % of one core over the window.`,
    "",
    "| Nodes ← driver | Deliveries/s | Node user µs | Node kernel µs | Node total µs | Redis µs | p99 window | p99 whole phase | Driver CPU | Lost |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
  ];
  const rows = ROWS.map((row, i) => {
    const f = medians[i];
    return (
      `| ${label(row)} | ${Math.round(f.deliveriesPerS)} | ${f.userUs.toFixed(2)} | ${f.systemUs.toFixed(2)} | ` +
      `${f.totalUs.toFixed(2)} | ${f.redisUs.toFixed(2)} | ${p99(f.windowP99)} | ${p99(f.wholeP99)} | ` +
      `${Math.round(f.driverCore)} % | ${f.lost} |`
    );
  });
  return [...head, ...rows, "", `Socket.IO / Switchboard, total node CPU per delivery: ${ratioText}.`].join("\n");
}

function intEnv(name, fallback) {
  const value = process.env[name];
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) fail(`${name} must be a positive whole number (not ${value})`);
  return n;
}

/** Prints why and exits 1; the exit handler kills every child. */
function fail(message) {
  console.error(`socketio-compare: ${message}`);
  process.exit(1);
}
