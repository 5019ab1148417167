//! `GET /switchboard/connections` and the dashboard's `monitor::directory` against real parts: two
//! nodes on a test-owned redis-server, real WebSocket clients with users and groups. The directory
//! finds a user, a group and a connection id on the right node, pages through a node in id order
//! without repeats, refuses a bad page size in words, says plainly when nothing matches, and sends
//! the monitor token to a guarded node. Through the dashboard's runtime (`MonitorCommand::Directory`),
//! a user is found on the right node with its groups and its channel's NUMSUB, a node without a
//! monitor endpoint is named as such, and nothing found is said plainly.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeSet;

use common::redis::RedisServer;
use common::{connect, s, start_node, start_node_with, unique_prefix, wait_connected, within};
use switchboard::client::HubClient;
use switchboard::hub::{BackplaneChoice, NodeConfig, NodeHandle};
use switchboard::monitor::NodeTarget;
use switchboard::monitor::directory::{self, DirectoryError, DirectoryQuery};
use switchboard::monitor_token::MonitorToken;
use switchboard::protocol::Protocol;

fn target(node: &NodeHandle) -> NodeTarget {
    NodeTarget {
        hub_url: node.hub_url(),
        monitor_url: Some(format!("{}/switchboard/stats", node.base_url())),
    }
}

fn stats_url(node: &NodeHandle) -> String {
    format!("{}/switchboard/stats", node.base_url())
}

async fn join(client: &HubClient, group: &str) {
    within("JoinGroup", client.invoke("JoinGroup", vec![s(group)]))
        .await
        .unwrap();
}

fn query(id: Option<&str>, user: Option<&str>, group: Option<&str>) -> DirectoryQuery {
    DirectoryQuery {
        id: id.map(str::to_string),
        user: user.map(str::to_string),
        group: group.map(str::to_string),
    }
}

/// (hub URL, ids found) for every node that found something; panics on a node error.
async fn found(nodes: &[NodeTarget], q: &DirectoryQuery) -> Vec<(String, Vec<String>)> {
    let answers = within("directory search", directory::search(nodes, q, None, None, 1000)).await;
    let mut out = Vec::new();
    for answer in answers {
        let entries = answer
            .result
            .unwrap_or_else(|e| panic!("{}: {e}", answer.hub_url));
        assert!(!answer.truncated);
        if !entries.is_empty() {
            out.push((answer.hub_url, entries.into_iter().map(|e| e.id).collect()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_finds_users_groups_and_ids_on_the_right_node_and_pages() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("dir-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("dir-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    wait_connected(&a).await;
    wait_connected(&b).await;
    let nodes = [target(&a), target(&b)];

    let alice1 = connect(&a, Protocol::Json, Some("alice")).await;
    let alice2 = connect(&a, Protocol::MessagePack, Some("alice")).await;
    let bob = connect(&b, Protocol::Json, Some("bob")).await;
    join(&alice1, "Room").await;
    join(&bob, "Room").await;
    join(&bob, "Other").await;
    let alice_ids: BTreeSet<String> = [&alice1, &alice2]
        .iter()
        .map(|c| c.connection_id().unwrap().to_string())
        .collect();
    let bob_id = bob.connection_id().unwrap().to_string();

    // A user: both of alice's connections, on node A only.
    let hits = found(&nodes, &query(None, Some("alice"), None)).await;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].0, a.hub_url());
    assert_eq!(hits[0].1.iter().cloned().collect::<BTreeSet<_>>(), alice_ids);

    // A group: one member on each node, spelled as on the wire.
    let hits = found(&nodes, &query(None, None, Some("Room"))).await;
    assert_eq!(
        hits,
        vec![
            (a.hub_url(), vec![alice1.connection_id().unwrap().to_string()]),
            (b.hub_url(), vec![bob_id.clone()]),
        ]
    );
    assert!(found(&nodes, &query(None, None, Some("room"))).await.is_empty());
    // User and group together; a connection id.
    let hits = found(&nodes, &query(None, Some("alice"), Some("Room"))).await;
    assert_eq!(
        hits,
        vec![(a.hub_url(), vec![alice1.connection_id().unwrap().to_string()])]
    );
    let hits = found(&nodes, &query(Some(&bob_id), None, None)).await;
    assert_eq!(hits, vec![(b.hub_url(), vec![bob_id.clone()])]);

    // What a page says about one connection.
    let page = within(
        "bob's page",
        directory::fetch_page(
            &stats_url(&b),
            &query(Some(&bob_id), None, None),
            10,
            None,
            None,
            None,
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        (page.node_name.as_str(), page.server_name.as_str()),
        ("dir-b", b.server_name())
    );
    let entry = &page.connections[0];
    assert_eq!(entry.user.as_deref(), Some("bob"));
    assert_eq!(entry.protocol, "json");
    assert_eq!(entry.groups, ["Other", "Room"]);
    assert_eq!(entry.groups_total, 2);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(entry.connected_at_ms <= now_ms && entry.connected_at_ms + 60_000 > now_ms);

    // Not found anywhere: said plainly.
    let ghost = query(None, Some("ghost"), None);
    let answers = within("ghost search", directory::search(&nodes, &ghost, None, None, 100)).await;
    assert_eq!(
        directory::summary(&ghost, &answers),
        vec!["user \"ghost\" was not found on any of the 2 node(s) that answered".to_string()]
    );

    // Paging: 7 more clients on A (9 in all); pages of 2 in id order, each once, then no cursor.
    let mut more = Vec::new();
    for _ in 0..7 {
        more.push(connect(&a, Protocol::Json, None).await);
    }
    let everyone = DirectoryQuery::default();
    let mut after: Option<String> = None;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = within(
            "a page",
            directory::fetch_page(&stats_url(&a), &everyone, 2, after.as_deref(), None, None),
        )
        .await
        .unwrap();
        assert!(page.connections.len() <= 2);
        assert_eq!(page.limit, 2);
        ids.extend(page.connections.iter().map(|c| c.id.clone()));
        pages += 1;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!((ids.len(), pages), (9, 5), "{ids:?}");
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "in id order, no repeats");
    // The directory's search reads every page by itself, within its bound.
    let answers = within(
        "bounded search",
        directory::search(&nodes[..1], &everyone, None, None, 4),
    )
    .await;
    assert_eq!(answers[0].result.as_ref().unwrap().len(), 4);
    assert!(answers[0].truncated, "more than 4 exist");

    // A bad page size is a 400 with a reason.
    let bad = common::http::get(&format!("{}/switchboard/connections?limit=0", a.base_url())).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("from 1 to 1000"), "{}", bad.text());

    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_sends_the_monitor_token_and_reports_a_refusal() {
    let token = MonitorToken::new("dir-token-1").unwrap();
    let mut config = NodeConfig::new("dir-guarded");
    config.channel_prefix = unique_prefix();
    config.monitor_token = Some(token.clone());
    let node = start_node_with(config, BackplaneChoice::Alone).await;
    let _carol = connect(&node, Protocol::Json, Some("carol")).await;
    let nodes = [target(&node)];
    let q = query(None, Some("carol"), None);

    let answers = within(
        "search without the token",
        directory::search(&nodes, &q, None, None, 10),
    )
    .await;
    match &answers[0].result {
        Err(DirectoryError::Refused {
            status: 401, reason, ..
        }) => {
            assert!(reason.contains("--monitor-token"), "{reason}")
        }
        other => panic!("expected a 401 refusal, got {other:?}"),
    }
    let lines = directory::summary(&q, &answers);
    assert!(
        lines[0].contains("not found on any of the 0 node(s) that answered"),
        "{lines:?}"
    );
    assert!(lines[1].contains("HTTP 401"), "{lines:?}");

    let answers = within(
        "search with the token",
        directory::search(&nodes, &q, Some(&token), None, 10),
    )
    .await;
    let entries = answers[0].result.as_ref().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].user.as_deref(), Some("carol"));

    // A node without a monitor endpoint cannot be asked, and says so.
    let foreign = NodeTarget {
        hub_url: "http://127.0.0.1:9/chat".to_string(),
        monitor_url: None,
    };
    let answers = directory::search(&[foreign], &q, None, None, 10).await;
    assert!(matches!(answers[0].result, Err(DirectoryError::NoMonitor(_))));
    node.shutdown().await;
}

/// Waits for the runtime's answer to directory search `id` (other events are skipped).
async fn answer_of(
    events: &mut switchboard::monitor::runtime::MonitorEvents,
    id: u64,
) -> switchboard::monitor::model::directory::DirectoryAnswer {
    use switchboard::monitor::MonitorEvent;
    let wait = async {
        loop {
            let Some(batch) = events.recv().await else {
                panic!("the runtime stopped");
            };
            for event in batch {
                if let MonitorEvent::Directory(answer) = event
                    && answer.search.id == id
                {
                    return answer;
                }
            }
        }
    };
    within("the directory answer", wait).await
}

/// The dashboard's side of the directory, through its runtime: a search for a user names the node
/// that holds it with its groups and counts its channel's subscribers (NUMSUB on the real Redis);
/// a node without a monitor endpoint (as an ASP.NET Core node) is said to be one; a search for
/// nothing says so plainly with the Redis side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_directory_finds_a_user_on_the_right_node_and_counts_its_channel() {
    use switchboard::monitor::model::directory::{Directory, DirectoryKind, summary};
    use switchboard::monitor::{MonitorCommand, MonitorHandle, TapSource};

    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let a = start_node("dirrt-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let b = start_node("dirrt-b", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    let c = start_node("dirrt-c", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
    for node in [&a, &b, &c] {
        wait_connected(node).await;
    }
    let carol = connect(&b, Protocol::Json, Some("carol")).await;
    join(&carol, "Lobby").await;
    let carol_id = carol.connection_id().unwrap().to_string();

    let (monitor, mut events) = MonitorHandle::start();
    let spec = switchboard::redis_conn::RedisSpec::parse(&redis.url(), &Default::default()).unwrap();
    assert!(monitor.command(MonitorCommand::SetTap(Some(TapSource::Redis {
        spec: Box::new(spec),
        prefix: prefix.clone(),
    }))));
    assert!(monitor.command(MonitorCommand::AddNode(target(&a))));
    assert!(monitor.command(MonitorCommand::AddNode(target(&b))));
    // Node C watched as if it had no monitor endpoint (an ASP.NET Core node).
    assert!(monitor.command(MonitorCommand::AddNode(NodeTarget {
        hub_url: c.hub_url(),
        monitor_url: None,
    })));

    let namings = vec![(prefix.clone(), switchboard::config::DEFAULT_HUB_NAME.to_string())];
    let mut directory = Directory::default();
    let search = directory.ask("carol", DirectoryKind::Any, &namings);
    let id = search.id;
    assert!(monitor.command(MonitorCommand::Directory(search)));
    let answer = answer_of(&mut events, id).await;
    directory.on_answer(answer.clone());
    assert_eq!(directory.answer(), Some(&answer));

    let by_node = |url: &str| answer.nodes.iter().find(|n| n.hub_url == url).unwrap();
    let on_b = by_node(&b.hub_url()).hits.as_ref().unwrap();
    assert_eq!(on_b.len(), 1, "{answer:#?}");
    assert_eq!(on_b[0].matched, DirectoryKind::User);
    assert_eq!(on_b[0].entry.id, carol_id);
    assert_eq!(on_b[0].entry.groups, ["Lobby"]);
    assert!(by_node(&a.hub_url()).hits.as_ref().unwrap().is_empty());
    let on_c = by_node(&c.hub_url());
    assert!(on_c.no_monitor, "{on_c:?}");
    let hub = switchboard::config::DEFAULT_HUB_NAME;
    assert_eq!(
        answer.channels,
        vec![
            (format!("{prefix}{hub}:connection:carol"), Ok(0)),
            (format!("{prefix}{hub}:user:carol"), Ok(1)),
            (format!("{prefix}{hub}:group:carol"), Ok(0)),
        ]
    );
    let name = |u: &str| {
        [(&a, "a"), (&b, "b"), (&c, "c")]
            .iter()
            .find(|(n, _)| n.hub_url() == u)
            .map_or(u.to_string(), |(_, s)| s.to_string())
    };
    let lines = summary(&answer, &name);
    assert_eq!(lines[0], "user \"carol\": 1 connection on 1 node: b 1");
    assert!(
        lines.iter().any(|l| l.starts_with("c has no monitor endpoint")),
        "{lines:?}"
    );

    // Something that does not exist: plainly, with the Redis side.
    let search = directory.ask("ghost", DirectoryKind::Any, &namings);
    let id = search.id;
    assert!(monitor.command(MonitorCommand::Directory(search)));
    let answer = answer_of(&mut events, id).await;
    assert_eq!(
        summary(&answer, &name)[0],
        format!(
            "no connection, user or group \"ghost\" on 2 nodes; channel {prefix}{hub}:connection:ghost has 0 \
             subscribers, {prefix}{hub}:user:ghost has 0 subscribers, {prefix}{hub}:group:ghost has 0 subscribers"
        )
    );

    monitor.shutdown();
    within("the monitor stops", monitor.stopped()).await;
    for node in [a, b, c] {
        node.shutdown().await;
    }
}
