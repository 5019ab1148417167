//! The window's subcommands, `switchboard` / `switchboard dashboard` and `switchboard demo` (the
//! only file behind the `gui` feature): their flags, the display check, and the runs that hand
//! over to `link` and `ui`.

use clap::Args;

use super::*;

/// What the dashboard connects to at start (added to what it remembers from the last run).
#[derive(Debug, Args, Default)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub redis: RedisArgs,

    /// The backplane's channel prefix (ASP.NET Core's ChannelPrefix).
    #[arg(long)]
    pub channel_prefix: Option<String>,

    /// A hub node to watch: its hub URL (http://host:port/chat, or https://; see --node-ca),
    /// optionally followed by a comma and its stats URL (http://host:port/switchboard/stats;
    /// derived for Switchboard nodes when left out; write `none` for a node without one, such as
    /// an ASP.NET Core server). Repeatable.
    #[arg(long = "node", value_name = "HUB_URL[,STATS_URL]")]
    pub nodes: Vec<String>,

    /// Start with the settings of this workspace file (Redis URL, prefix, node list).
    #[arg(long, value_name = "FILE")]
    pub workspace: Option<std::path::PathBuf>,

    /// Start in presenter mode (large type, topology view).
    #[arg(long)]
    pub presenter: bool,

    /// Forget the settings remembered from earlier runs.
    #[arg(long)]
    pub fresh: bool,

    /// Which tab to show first: traffic, rates, nodes, send, topology, redis, directory, health.
    #[arg(long, value_parser = ["traffic", "rates", "nodes", "send", "topology", "redis", "directory", "health"])]
    pub tab: Option<String>,

    /// Quit after this many seconds (for smoke tests and screenshots; not in --help).
    #[arg(long, value_name = "SECS", hide = true)]
    pub exit_after: Option<f64>,

    /// Open a JSON Lines capture (File > Export) and browse it offline.
    #[arg(long, value_name = "FILE")]
    pub capture: Option<std::path::PathBuf>,

    /// A CA certificate (PEM) to trust for https:// nodes, besides the system's roots: for nodes
    /// started with `switchboard hub --tls-cert` by a private CA.
    #[arg(long, value_name = "FILE")]
    pub node_ca: Option<std::path::PathBuf>,
    /// Bearer token sent to the watched nodes' monitor endpoints (the nodes' --monitor-token):
    /// to nodes named with --node, the Add node field or a workspace, or matching --trust-nodes,
    /// never to a node known only from its heartbeat. Used for this run only, never saved;
    /// prefer the SWITCHBOARD_MONITOR_TOKEN variable.
    #[arg(long, env = MONITOR_TOKEN_ENV, hide_env_values = true, value_name = "TOKEN")]
    pub monitor_token: Option<TokenArg>,

    #[command(flatten)]
    pub node_token: NodeTokenArgs,

    /// Trust discovered nodes whose hub URL matches GLOB (`*` any run of characters, `?` one,
    /// whole URL, case-insensitive; e.g. 'http://10.0.0.*:5000/chat'): they get the monitor and
    /// node tokens. Repeatable; remembered with the settings and saved in workspaces.
    #[arg(long = "trust-nodes", value_name = "GLOB")]
    pub trust_nodes: Vec<String>,
}

/// The demo's knobs; everything else is set from the UI while it runs.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Hub nodes to start (1 to 8).
    #[arg(long, default_value_t = 2, value_parser = parse_demo_nodes)]
    pub nodes: usize,

    /// Backplane: auto (a private redis-server when one is on PATH, else in memory), redis, memory.
    #[arg(long, default_value = "auto", value_parser = ["auto", "redis", "memory"])]
    pub backplane: String,

    /// Run the demo's nodes on your own Redis (a cluster, a sentinel set, TLS, ACL) instead of a
    /// private redis-server: --redis URL and the same --redis-* flags as `hub` and `dashboard`.
    /// The demo's channels then start with "switchboard-demo:"; it never stops that Redis.
    #[command(flatten)]
    pub redis: RedisArgs,

    /// Simulated chat clients per node.
    #[arg(long, default_value_t = 5)]
    pub clients: u32,

    /// Chat messages per second from all simulated clients together.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,

    /// Start in presenter mode (large type, topology view).
    #[arg(long)]
    pub presenter: bool,

    /// Quit after this many seconds (for smoke tests and screenshots; not in --help).
    #[arg(long, value_name = "SECS", hide = true)]
    pub exit_after: Option<f64>,

    /// Which tab to show first: traffic, rates, nodes, send, topology, redis, directory, health.
    #[arg(long, value_parser = ["traffic", "rates", "nodes", "send", "topology", "redis", "directory", "health"])]
    pub tab: Option<String>,
}

/// Most demo nodes: each is a real node with its simulated clients, on a 2-core laptop.
pub(super) const MAX_DEMO_NODES: usize = 8;

pub(super) fn parse_demo_nodes(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_DEMO_NODES).contains(&n) => Ok(n),
        _ => Err(format!("the demo runs 1 to {MAX_DEMO_NODES} nodes")),
    }
}

/// Refuses to go on without a display, in one sentence (before any window or demo starts).
pub(super) fn require_display() -> anyhow::Result<()> {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if cfg!(all(unix, not(target_os = "macos"))) && !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
        anyhow::bail!(
            "there is no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set); \
             in a terminal, watch the backplane with `switchboard tap --redis URL`, check every node \
             with `switchboard check --redis URL`, or run a node with `switchboard hub`"
        );
    }
    Ok(())
}

impl DashboardArgs {
    /// The defaults of a bare `switchboard`, where clap parsed no dashboard flags: REDIS_URL still
    /// counts, as it does for `switchboard dashboard`.
    pub(super) fn default_from_env() -> Self {
        let monitor_token = std::env::var(MONITOR_TOKEN_ENV).ok().map(TokenArg);
        Self {
            redis: RedisArgs {
                redis: std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()),
                redis_sentinel_password: std::env::var("REDIS_SENTINEL_PASSWORD")
                    .ok()
                    .filter(|u| !u.is_empty()),
                ..RedisArgs::default()
            },
            monitor_token,
            ..Self::default()
        }
    }
}

/// The window's title, size and persistence (window size and position are remembered too).
pub(super) fn native_options() -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Switchboard")
            .with_app_id("switchboard")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([800.0, 500.0]),
        ..Default::default()
    }
}

/// Opens the dashboard: remembered settings, plus what the flags add.
pub(super) fn run_dashboard(args: DashboardArgs) -> anyhow::Result<()> {
    use crate::ui::{DashboardApp, Settings, Startup, Tab};

    let mut nodes = Vec::new();
    for text in &args.nodes {
        nodes.push(crate::ui::parse_node(text).map_err(|e| usage(format!("--node {text}: {e}")))?);
    }
    let workspace = match &args.workspace {
        Some(path) => Some(crate::ui::read_workspace(path).map_err(usage)?),
        None => None,
    };
    let capture = match &args.capture {
        Some(path) => {
            let (entries, _) = crate::ui::read_capture(path).map_err(usage)?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((name, entries))
        }
        None => None,
    };
    let redis = usage_of(args.redis.spec())?;
    let monitor_options = crate::monitor::MonitorOptions {
        node_tls: usage_of(node_tls(args.node_ca.as_deref()))?,
        node_credentials: usage_of(args.node_token.credentials())?,
        ..crate::monitor::MonitorOptions::default()
    };
    let token = usage_of(monitor_token(args.monitor_token.as_ref()))?;
    require_display()?;
    let (mut link, _) = crate::link::Link::start_with(None, monitor_options)?;
    if link.signalled() {
        return Ok(());
    }
    if token.is_some() {
        // Queued before any node is watched: the UI's first commands come after it.
        link.command(crate::monitor::MonitorCommand::SetMonitorToken(token));
    }
    let tab = args.tab.as_deref().and_then(Tab::from_name);
    let exit_after = args.exit_after.map(std::time::Duration::from_secs_f64);
    eframe::run_native(
        "Switchboard",
        native_options(),
        Box::new(move |cc| {
            link.attach_window(&cc.egui_ctx);
            let mut settings: Settings = match (args.fresh, cc.storage) {
                (false, Some(storage)) => eframe::get_value::<Settings>(storage, crate::ui::STORAGE_KEY)
                    .unwrap_or_default()
                    .loaded(),
                _ => Settings::default(),
            };
            if let Some(workspace) = workspace {
                settings.apply_workspace(workspace);
            }
            for node in nodes {
                settings.add_node(node);
            }
            for glob in &args.trust_nodes {
                settings.add_trust_glob(glob);
            }
            if let Some(prefix) = args.channel_prefix {
                settings.channel_prefix = prefix;
            }
            settings.presenter |= args.presenter;
            let startup = Startup {
                settings,
                redis,
                demo: None,
                tab,
                persist: true,
                exit_after,
                capture,
            };
            Ok(Box::new(DashboardApp::new(link, startup)))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the dashboard window could not open: {e}"))
}

/// Starts the demo's nodes, backplane and simulated clients, then the dashboard connected to them.
pub(super) fn run_demo(args: DemoArgs) -> anyhow::Result<()> {
    use crate::demo::{DemoBackplane, DemoOptions, SimSettings};
    use crate::ui::{DashboardApp, Settings, Startup, Tab};

    let backplane = match args.backplane.as_str() {
        "redis" => DemoBackplane::Redis,
        "memory" => DemoBackplane::Memory,
        _ => DemoBackplane::Auto,
    };
    let external_redis = usage_of(args.redis.spec())?;
    if external_redis.is_some() && args.backplane == "memory" {
        return Err(usage(
            "--redis and --backplane memory contradict each other: choose one",
        ));
    }
    require_display()?;
    let options = DemoOptions {
        nodes: args.nodes,
        backplane,
        channel_prefix: if external_redis.is_some() {
            "switchboard-demo:".to_string()
        } else {
            String::new()
        },
        external_redis,
        sim: SimSettings {
            clients_per_node: args.clients,
            messages_per_sec: args.rate,
            ..SimSettings::default()
        },
        // The nodes require tokens (a random HS256 secret for this run): the demo shows the real
        // thing, and its simulated users, chat-page links and dashboard present tokens.
        auth_secret: Some(crate::demo::random_secret()),
    };
    let (link, wiring) = crate::link::Link::start(Some(options))?;
    if link.signalled() {
        // Dropping the link stops the demo in the window-close order.
        return Ok(());
    }
    if let Some(status) = link.demo_status() {
        for node in &status.nodes {
            println!(
                "demo node {}: chat page {} · hub {}",
                node.name, node.page_url, node.hub_url
            );
        }
        match &status.redis_url {
            Some(url) => println!("demo backplane: private redis-server at {url}"),
            None => println!("demo backplane: in memory (no redis-server on PATH)"),
        }
    }
    let settings = Settings {
        presenter: args.presenter,
        ..Settings::default()
    };
    let tab = args.tab.as_deref().and_then(Tab::from_name);
    let exit_after = args.exit_after.map(std::time::Duration::from_secs_f64);
    eframe::run_native(
        "Switchboard demo",
        native_options(),
        Box::new(move |cc| {
            link.attach_window(&cc.egui_ctx);
            let startup = Startup {
                settings,
                redis: None,
                demo: wiring,
                tab,
                persist: false,
                exit_after,
                capture: None,
            };
            Ok(Box::new(DashboardApp::new(link, startup)))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the demo window could not open: {e}"))
}
