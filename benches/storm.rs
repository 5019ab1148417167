//! Reconnect storm: how many SignalR handshakes per second one node completes when thousands of
//! clients come back at once, with a Redis that is 1 ms away each way (as on a real network).
//!
//! `cargo bench --bench storm` starts a private `redis-server`, a small TCP proxy in front of it
//! that holds every chunk 1 ms in each direction, and one hub node on the Redis backplane (through
//! the proxy). It then re-executes itself as `STORM_PROCESSES` (4) child processes, each opening its
//! share of `STORM_CLIENTS` (19,000) WebSocket connections and doing the SignalR JSON handshake (a
//! handshake is done when `{}` arrives: the node has subscribed the connection's channel by then).
//! One process may hold at most 20,000 open files here, so the clients live in the children and
//! the node's process holds only the node's side.
//!
//! The clients are lean (see `child`): raw sockets, one request and one frame per connection, on a
//! single-threaded runtime, spread over `STORM_SOURCES` (16) loopback source addresses so that
//! `connect` does not search a nearly exhausted ephemeral port range. On a 2-core machine the
//! clients share the CPU with the node: before this, they spent ~290 µs of CPU per handshake
//! against the node's ~90 µs, and the figure measured the load generator.
//!
//! Every child starts on the same "go"; each keeps at most `STORM_IN_FLIGHT` (250) handshakes
//! under way, so the children together stay under the node's accept queue
//! (`config::LISTEN_BACKLOG`, 4096) and the figure measures the node, not SYN retransmits. The
//! figure printed is `completed handshakes / (last completion − go)`, plus the median and p99
//! handshake time. It also prints the CPU time spent per handshake by the bench process (node and
//! proxy), by `redis-server` and by the client processes (`/proc/PID/stat` user + system ticks),
//! and their sum as handshakes per core-second: on a shared 2-core machine the rate is bounded by
//! CPU, and these say by whose. `STORM_BACKPLANE=memory` runs the same storm without Redis, for the
//! ceiling of the node itself. Bounded: every phase has a timeout and the run stops by itself.
//!
//! `STORM_AUTH=hs256|rs256` starts the node with `--auth jwt` (an HS256 secret, or an RSA-2048
//! public key made with the `openssl` CLI) and every client presents its own token
//! (`Authorization: Bearer`, `sub` = a distinct user per connection), minted by its process
//! before the "go", so the figure includes the node's verification only.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard::demo::redis_server::RedisProcess;
use switchboard::hub::{BackplaneChoice, Node, NodeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// Set in a child: `node_addr count in_flight sources seed`.
const CHILD_ENV: &str = "STORM_CHILD";

/// `STORM_AUTH`: `hs256` or `rs256` (see the module docs); the children inherit it.
const AUTH_ENV: &str = "STORM_AUTH";
/// Set in a child under `STORM_AUTH=rs256`: the private key file it signs its tokens with.
const AUTH_KEY_ENV: &str = "STORM_AUTH_KEY";
/// The HS256 secret of the bench (a bench-only value).
const BENCH_SECRET: &[u8] = b"storm-bench-secret-not-used-anywhere";

/// The node's verifier for `STORM_AUTH`, and the private key file for the children (RS256).
fn bench_auth(mode: &str) -> Option<(switchboard::hub::auth::Verifier, Option<std::path::PathBuf>)> {
    use switchboard::hub::auth::{JwtSecret, JwtSettings, KeySource, Verifier};
    match mode {
        "hs256" => {
            let key = KeySource::Secret(JwtSecret::new(BENCH_SECRET).ok()?);
            Some((Verifier::new(JwtSettings::new(key)).ok()?, None))
        }
        "rs256" => {
            let dir = std::env::temp_dir().join(format!("storm-rs256-{}", std::process::id()));
            std::fs::create_dir_all(&dir).ok()?;
            let openssl = |args: &[&str]| {
                Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            if !openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "key.pem",
            ]) || !openssl(&["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"])
            {
                return None;
            }
            let key = KeySource::PublicKeyFile(dir.join("pub.pem"));
            Some((
                Verifier::new(JwtSettings::new(key)).ok()?,
                Some(dir.join("key.pem")),
            ))
        }
        _ => None,
    }
}

/// A child's tokens, one per connection (`sub` = `storm-{seed}-{i}`), or none without auth.
fn child_tokens(count: usize, seed: u64) -> Vec<String> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let mode = std::env::var(AUTH_ENV).unwrap_or_default();
    let (alg, key) = match mode.as_str() {
        "hs256" => match EncodingKey::from_secret(BENCH_SECRET) {
            Ok(key) => (Algorithm::HS256, key),
            Err(_) => return Vec::new(),
        },
        "rs256" => {
            let pem = std::env::var(AUTH_KEY_ENV)
                .ok()
                .and_then(|path| std::fs::read(path).ok())
                .unwrap_or_default();
            match EncodingKey::from_rsa_pem(&pem) {
                Ok(key) => (Algorithm::RS256, key),
                Err(_) => return Vec::new(),
            }
        }
        _ => return Vec::new(),
    };
    let exp = unix_us() / 1_000_000 + 3600;
    (0..count)
        .filter_map(|i| {
            let claims = serde_json::json!({ "sub": format!("storm-{seed}-{i}"), "exp": exp });
            encode(&Header::new(alg), &claims, &key).ok()
        })
        .collect()
}

/// The latency the proxy adds in each direction.
const PROXY_DELAY: Duration = Duration::from_millis(1);

/// How many loopback source addresses the clients spread over (127.0.0.2 …): 19,000 connections
/// from one address to one destination use up most of its ephemeral port range, and every
/// `connect` then searches it (the kernel's `__inet_hash_connect` took more than half of the
/// clients' CPU). `STORM_SOURCES=0` lets the kernel pick from 127.0.0.1, as before.
const DEFAULT_SOURCES: usize = 16;

/// How long the whole storm may take before the bench gives up on it.
const STORM_TIMEOUT: Duration = Duration::from_secs(180);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let clients = env_usize("STORM_CLIENTS", 19_000);
    let processes = env_usize("STORM_PROCESSES", 4).max(1);
    let in_flight = env_usize("STORM_IN_FLIGHT", 250).max(1);
    let sources = env_usize("STORM_SOURCES", DEFAULT_SOURCES);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(parent(clients, processes, in_flight, sources));
    // Do not wait for stray tasks (the proxy's pipes): the figures are printed.
    runtime.shutdown_timeout(Duration::from_secs(2));
}

/// (user, system) CPU ticks of a process so far (0 when unreadable).
fn cpu_ticks(pid: &str) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    (get(11), get(12)) // utime, stime (fields 14 and 15)
}

/// (busy, all) CPU ticks of the whole machine so far, summed over its cores (`/proc/stat`).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let all: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (all.saturating_sub(idle), all)
}

fn sum_ticks(pids: &[String]) -> (u64, u64) {
    pids.iter()
        .map(|p| cpu_ticks(p))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
}

/// Waits up to 10 s for a child to exit, then kills it: the bench always stops by itself.
fn reap(mut child: std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("storm: a client process did not exit in 10 s; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

async fn parent(clients: usize, processes: usize, in_flight: usize, sources: usize) {
    let memory = std::env::var("STORM_BACKPLANE").is_ok_and(|b| b == "memory");
    let redis = if memory {
        None
    } else {
        match RedisProcess::start().await {
            Ok(redis) => Some(redis),
            Err(e) => {
                println!("storm: skipped, no redis-server ({e})");
                return;
            }
        }
    };
    let backplane = match &redis {
        Some(redis) => {
            let upstream: SocketAddr = ([127, 0, 0, 1], redis.port()).into();
            let proxy = TcpListener::bind("127.0.0.1:0").await.expect("proxy listener");
            let proxy_addr = proxy.local_addr().expect("proxy address");
            tokio::spawn(run_proxy(proxy, upstream));
            BackplaneChoice::RedisUrl(format!("redis://{proxy_addr}"))
        }
        None => BackplaneChoice::Alone,
    };

    let mut config = NodeConfig::new("storm");
    config.max_connections = clients + 100;
    let auth_mode = std::env::var(AUTH_ENV).unwrap_or_default();
    let mut auth_key_file = None;
    if !auth_mode.is_empty() {
        let Some((verifier, key_file)) = bench_auth(&auth_mode) else {
            println!(
                "storm: STORM_AUTH={auth_mode:?} could not be set up (hs256 or rs256; rs256 needs openssl)"
            );
            return;
        };
        println!("storm: --auth jwt, {auth_mode} tokens, one per connection");
        config.auth = Some(Arc::new(verifier));
        auth_key_file = key_file;
    }
    let node = Node::start(config, backplane).await.expect("node starts");
    let mut status = node.backplane_status();
    // The `Ref` that `wait_for` returns holds the watch's read lock: keep only the answer, or the
    // backplane could never publish another state change.
    let up = tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.state.is_up()))
        .await
        .is_ok_and(|r| r.is_ok());
    if !up {
        println!("storm: the node did not connect to Redis through the proxy");
        return;
    }
    let node_addr = node.local_addr();

    let exe = std::env::current_exe().expect("current exe");
    let mut children = Vec::new();
    for i in 0..processes {
        let share = clients / processes + usize::from(i < clients % processes);
        let mut command = Command::new(&exe);
        if let Some(key_file) = &auth_key_file {
            command.env(AUTH_KEY_ENV, key_file);
        }
        let child = command
            .env(
                CHILD_ENV,
                format!("{node_addr} {share} {in_flight} {sources} {}", i + 1),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning a client process");
        children.push(child);
    }
    let mut readers = Vec::new();
    for child in &mut children {
        let mut reader = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut line = String::new();
        let _ = reader.read_line(&mut line); // "ready"
        readers.push(reader);
    }
    let child_pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
    let redis_pid: Vec<String> = redis
        .iter()
        .filter_map(|r| r.pid())
        .map(|p| p.to_string())
        .collect();
    let own_before = cpu_ticks("self");
    let children_before = sum_ticks(&child_pids);
    let redis_before = sum_ticks(&redis_pid);
    let machine_before = machine_ticks();
    let go = unix_us();
    for child in &mut children {
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = writeln!(stdin, "go");
            let _ = stdin.flush();
        }
    }
    // Each child answers "done OK FAILED LAST_US" and a line of handshake times (µs).
    let reports = tokio::task::spawn_blocking(move || {
        let mut reports = Vec::new();
        for mut reader in readers {
            let mut done = String::new();
            let mut times = String::new();
            let _ = reader.read_line(&mut done);
            let _ = reader.read_line(&mut times);
            reports.push((done, times));
        }
        reports
    });
    let reports = match tokio::time::timeout(STORM_TIMEOUT + Duration::from_secs(10), reports).await {
        Ok(Ok(reports)) => reports,
        _ => {
            println!("storm: the client processes did not report in time");
            for mut child in children {
                let _ = child.kill();
                let _ = child.wait();
            }
            return;
        }
    };
    let own_after = cpu_ticks("self");
    let own_cpu = (own_after.0 - own_before.0, own_after.1 - own_before.1);
    let children_after = sum_ticks(&child_pids);
    let children_cpu = (
        children_after.0 - children_before.0,
        children_after.1 - children_before.1,
    );
    let redis_after = sum_ticks(&redis_pid);
    let redis_cpu = (redis_after.0 - redis_before.0, redis_after.1 - redis_before.1);
    let machine_after = machine_ticks();
    let machine = (
        machine_after.0.saturating_sub(machine_before.0),
        machine_after.1.saturating_sub(machine_before.1),
    );
    let (mut ok, mut failed, mut last) = (0u64, 0u64, go);
    let mut times: Vec<u64> = Vec::new();
    for (done, line) in &reports {
        let fields: Vec<u64> = done
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        if let [o, f, l] = fields[..] {
            ok += o;
            failed += f;
            last = last.max(l);
        }
        times.extend(line.split_whitespace().filter_map(|t| t.parse::<u64>().ok()));
    }
    times.sort_unstable();
    let pct = |p: f64| times.get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1)));
    let span = Duration::from_micros(last.saturating_sub(go));
    let stats = node.stats();
    println!(
        "storm: {ok}/{clients} handshakes ({failed} failed) in {:.2} s → {:.0} handshakes/s; handshake time p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; node holds {} connections ({processes} client processes, ≤{in_flight} in flight each, proxy +{} ms each way)",
        span.as_secs_f64(),
        ok as f64 / span.as_secs_f64().max(1e-9),
        pct(0.5).copied().unwrap_or(0) as f64 / 1000.0,
        pct(0.99).copied().unwrap_or(0) as f64 / 1000.0,
        times.last().copied().unwrap_or(0) as f64 / 1000.0,
        stats["connections"]["total"],
        PROXY_DELAY.as_millis(),
    );
    if let Some(redis) = &redis {
        // How many SUBSCRIBE commands Redis saw for the storm (4 are the node's base channels).
        let info = async {
            let client = redis::Client::open(redis.url()).ok()?;
            let mut connection = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("INFO")
                .arg("commandstats")
                .query_async::<String>(&mut connection)
                .await
                .ok()
        };
        let calls = tokio::time::timeout(Duration::from_secs(5), info)
            .await
            .ok()
            .flatten()
            .and_then(|info| {
                let line = info.lines().find(|l| l.starts_with("cmdstat_subscribe:"))?;
                let calls = line.split("calls=").nth(1)?.split(',').next()?;
                calls.parse::<u64>().ok()
            });
        if let Some(calls) = calls {
            println!(
                "storm: Redis received {calls} SUBSCRIBE commands for {ok} handshakes ({:.1} handshakes per round trip)",
                ok as f64 / calls.max(1) as f64
            );
        }
    }
    // Ticks are 10 ms (CLK_TCK = 100 on these machines).
    let per = |ticks: u64| ticks as f64 * 10_000.0 / ok.max(1) as f64;
    let total = own_cpu.0 + own_cpu.1 + children_cpu.0 + children_cpu.1 + redis_cpu.0 + redis_cpu.1;
    println!(
        "storm: backplane {}; CPU per handshake: {} {:.0} µs user + {:.0} µs kernel, redis-server {:.0} + {:.0} µs, clients {:.0} + {:.0} µs; all together {:.0} µs ({:.0} handshakes per core-second); clients from {}",
        if memory {
            "memory (no Redis)"
        } else {
            "redis via the proxy"
        },
        if memory { "node" } else { "node+proxy" },
        per(own_cpu.0),
        per(own_cpu.1),
        per(redis_cpu.0),
        per(redis_cpu.1),
        per(children_cpu.0),
        per(children_cpu.1),
        per(total),
        1e6 / per(total).max(1e-9),
        if sources == 0 {
            "127.0.0.1 (kernel-chosen ports)".to_string()
        } else {
            format!("{sources} source addresses")
        },
    );
    // What else ran meanwhile: the machine's busy time beyond ours (other processes, and kernel
    // work no process is charged for, such as ksoftirqd). On a shared machine the rate is the
    // storm's share of the cores divided by its CPU per handshake.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let window = machine.1 as f64 / cores; // ticks per core over the storm
    let ours = total as f64;
    let others = machine.0.saturating_sub(total) as f64;
    println!(
        "storm: the machine's {cores:.0} cores over the storm: {:.2} busy with this storm, {:.2} with everything else, {:.2} idle; at all {cores:.0} cores this CPU per handshake would allow {:.0} handshakes/s",
        ours / window.max(1.0),
        others / window.max(1.0),
        (machine.1.saturating_sub(machine.0)) as f64 / window.max(1.0),
        cores * 1e6 / per(total).max(1e-9),
    );
    for child in &mut children {
        // Closing stdin tells the child to drop its connections and exit.
        drop(child.stdin.take());
    }
    let _ = tokio::task::spawn_blocking(move || children.into_iter().for_each(reap)).await;
    if tokio::time::timeout(Duration::from_secs(15), node.shutdown())
        .await
        .is_err()
    {
        eprintln!("storm: the node did not shut down in 15 s");
    }
    drop(redis);
}

/// Forwards every accepted connection to `upstream`, each chunk held `PROXY_DELAY` per direction.
async fn run_proxy(listener: TcpListener, upstream: SocketAddr) {
    while let Ok((down, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(up) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = down.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (down_read, down_write) = down.into_split();
            let (up_read, up_write) = up.into_split();
            tokio::spawn(delayed_pipe(down_read, up_write));
            tokio::spawn(delayed_pipe(up_read, down_write));
        });
    }
}

/// Copies `from` to `to`, writing each chunk `PROXY_DELAY` after it was read (in order, and
/// pipelined: chunks read meanwhile wait in a bounded queue, not behind each other's delay).
async fn delayed_pipe(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let (tx, mut rx) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(1024);
    let writer = tokio::spawn(async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(read_at + PROXY_DELAY).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send((tokio::time::Instant::now(), buf[..n].to_vec()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A client process: `count` connections, at most `in_flight` handshakes at a time, started on
/// "go" from stdin; reports, then holds the connections until stdin closes.
///
/// The clients are lean so that the figure measures the node, not the load generator: one
/// single-threaded runtime, `in_flight` tasks that each run handshakes back to back, a raw
/// `TcpStream`, an upgrade request and a handshake frame built once per connection from a template
/// (its own `Sec-WebSocket-Key` and mask), and only as much parsing as the protocol needs: the
/// status line of the 101 and the header block's end, then one frame header and its payload. It
/// stays a real client: it waits for the 101 before it sends the handshake frame (RFC 6455 4.1),
/// masks what it sends, and counts a handshake only when `{}` arrives.
///
/// Source addresses: with `sources` > 0 each socket is bound to one of 127.0.0.2 … 127.0.0.(sources+1)
/// with `IP_BIND_ADDRESS_NO_PORT` (the port is chosen at `connect`, by the 4-tuple). Every source
/// address has its own ephemeral port range, so `connect` does not search a range that 19,000
/// connections to the same destination have mostly used up.
fn child(spec: &str) {
    let mut fields = spec.split_whitespace();
    let node: Option<SocketAddr> = fields.next().and_then(|f| f.parse().ok());
    let count: usize = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let in_flight: usize = fields.next().and_then(|f| f.parse().ok()).unwrap_or(1);
    let sources: u32 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
    let seed: u64 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(1);
    let Some(node) = node else {
        eprintln!("storm child: bad spec {spec:?}");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let tokens = Arc::new(child_tokens(count, seed));
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    let (held, report) = runtime.block_on(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let template = Arc::new(Template::new(node));
        let mut workers = Vec::with_capacity(in_flight);
        for worker in 0..in_flight.min(count) {
            let next = next.clone();
            let template = template.clone();
            let tokens = tokens.clone();
            workers.push(tokio::spawn(async move {
                let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(worker as u64));
                let mut done = Vec::new();
                let mut failed = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    let source = (sources > 0).then(|| {
                        Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 2)) + (i as u32 % sources))
                    });
                    let started = Instant::now();
                    let token = tokens.get(i).map(String::as_str);
                    let attempt = handshake(node, source, &template, token, &mut rng);
                    match tokio::time::timeout(Duration::from_secs(60), attempt).await {
                        Ok(Some(socket)) => done.push((socket, started.elapsed(), unix_us())),
                        _ => failed += 1,
                    }
                }
                (done, failed)
            }));
        }
        let mut held = Vec::with_capacity(count);
        let (mut failed, mut last) = (0u64, 0u64);
        let mut times = Vec::with_capacity(count);
        let all = async {
            for worker in workers {
                match worker.await {
                    Ok((done, f)) => {
                        failed += f;
                        for (socket, took, done_at) in done {
                            held.push(socket);
                            times.push(took.as_micros().to_string());
                            last = last.max(done_at);
                        }
                    }
                    Err(_) => failed += 1,
                }
            }
        };
        if tokio::time::timeout(STORM_TIMEOUT, all).await.is_err() {
            eprintln!("storm child: timed out");
        }
        let report = format!("done {} {failed} {last}\n{}", held.len(), times.join(" "));
        (held, report)
    });
    println!("{report}");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_line(&mut line);
    drop(held);
    runtime.shutdown_timeout(Duration::from_secs(2));
}

/// The SignalR JSON handshake request, unmasked (each connection masks its own copy).
const HANDSHAKE: &[u8] = b"{\"protocol\":\"json\",\"version\":1}\x1e";

/// The upgrade request with a placeholder key, and where the key goes.
struct Template {
    request: Vec<u8>,
    key_at: usize,
}

impl Template {
    fn new(node: SocketAddr) -> Template {
        let head = format!(
            "GET /chat HTTP/1.1\r\nHost: {node}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        );
        let key_at = head.len();
        let mut request = head.into_bytes();
        request.extend_from_slice(&[b'A'; 24]);
        request.extend_from_slice(b"\r\n\r\n");
        Template { request, key_at }
    }
}

/// xorshift64*: the per-connection WebSocket key and mask (RFC 6455 wants them unpredictable to
/// intermediaries; a bench needs them distinct, and cheap).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Opens a TCP connection (from `source` if given), upgrades it to a WebSocket and completes the
/// SignalR JSON handshake; `None` on any failure.
async fn handshake(
    node: SocketAddr,
    source: Option<Ipv4Addr>,
    template: &Template,
    token: Option<&str>,
    rng: &mut Rng,
) -> Option<TcpStream> {
    use base64::Engine as _;
    let socket = TcpSocket::new_v4().ok()?;
    if let Some(source) = source {
        bind_address_no_port(&socket)?;
        socket.bind(SocketAddr::from((source, 0))).ok()?;
    }
    let mut stream = socket.connect(node).await.ok()?;
    stream.set_nodelay(true).ok()?;

    let mut request = template.request.clone();
    let key: [u8; 16] = [rng.next().to_le_bytes(), rng.next().to_le_bytes()]
        .concat()
        .try_into()
        .ok()?;
    base64::engine::general_purpose::STANDARD
        .encode_slice(key, &mut request[template.key_at..template.key_at + 24])
        .ok()?;
    if let Some(token) = token {
        // Before the blank line that ends the head.
        request.truncate(request.len() - 2);
        request.extend_from_slice(b"Authorization: Bearer ");
        request.extend_from_slice(token.as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
    }
    stream.write_all(&request).await.ok()?;

    // The response head: status line 101, up to the blank line.
    let mut buf = [0u8; 1024];
    let mut filled = 0;
    let head_end = loop {
        let n = stream.read(&mut buf[filled..]).await.ok()?;
        if n == 0 {
            return None;
        }
        filled += n;
        if let Some(at) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if filled == buf.len() {
            return None;
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101 ") {
        return None;
    }

    // The handshake request in one masked text frame (payload < 126 bytes).
    let mask = (rng.next() as u32).to_le_bytes();
    let mut frame = Vec::with_capacity(6 + HANDSHAKE.len());
    frame.extend_from_slice(&[0x81, 0x80 | HANDSHAKE.len() as u8]);
    frame.extend_from_slice(&mask);
    frame.extend(HANDSHAKE.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.ok()?;

    // Server frames are unmasked: skip control frames, then the first text frame must be `{}`.
    buf.copy_within(head_end..filled, 0);
    filled -= head_end;
    loop {
        while filled < 2 || filled < 2 + usize::from(buf[1] & 0x7f).min(126) {
            let n = stream.read(&mut buf[filled..]).await.ok()?;
            if n == 0 {
                return None;
            }
            filled += n;
        }
        let len = usize::from(buf[1] & 0x7f);
        if len >= 126 || buf[1] & 0x80 != 0 {
            return None; // the handshake reply and pings are short and unmasked
        }
        match buf[0] & 0x0f {
            0x1 => return buf[2..2 + len].starts_with(b"{}\x1e").then_some(stream),
            0x9 | 0xa => {
                buf.copy_within(2 + len..filled, 0);
                filled -= 2 + len;
            }
            _ => return None,
        }
    }
}

/// `IP_BIND_ADDRESS_NO_PORT`: `bind` takes the address only; `connect` picks the port.
fn bind_address_no_port(socket: &TcpSocket) -> Option<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    (r == 0).then_some(())
}
