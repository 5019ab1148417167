//! The Redis view in the real dashboard app, driven by its labels with egui_kittest against a
//! real redis-server and a real hub node: connect, open the Redis tab, see the connection, the
//! server, the node's named pub/sub connection and the limit; then a stalled subscriber filled
//! near its limit appears with the words saying Redis will cut it.
#![cfg(feature = "gui")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::kittest::{frames_until, has_label};

use std::time::Duration;

use common::redis::{RedisServer, redis_cmd, resp_command};
use common::{start_node, unique_prefix};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use switchboard::hub::BackplaneChoice;
use switchboard::link::Link;
use switchboard::ui::{DashboardApp, Settings, Startup};

/// Poll rounds are 5 s apart; the first comes at once.
const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn the_redis_tab_shows_servers_clients_and_a_subscriber_about_to_be_cut() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let prefix = unique_prefix();
    let (redis, _node) = rt.block_on(async {
        let redis = RedisServer::start().await;
        let node = start_node("node-a", BackplaneChoice::RedisUrl(redis.url()), &prefix).await;
        (redis, node)
    });
    let (link, _) = Link::start(None).expect("the link starts");
    let settings = Settings {
        channel_prefix: prefix.clone(),
        auto_connect: false,
        ..Settings::default()
    };
    let app = DashboardApp::new(link, Startup::new(settings));
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut DashboardApp| app.show(ui), app);

    h.get_by_label("Redis URL").click();
    h.step();
    h.get_by_label("Redis URL").type_text(&redis.url());
    h.step();
    h.get_by_label("Connect").click();
    h.step();
    h.get_by_label("Redis").click();
    h.step();
    frames_until(&mut h, DEADLINE, "the connection and the server", |h| {
        has_label(h, "single server 127.0.0.1")
            && has_label(h, "plaintext")
            && has_label(
                h,
                "Output buffer limit of pub/sub connections: hard 32 MB, soft 8 MB for 60 s",
            )
    });
    frames_until(&mut h, DEADLINE, "the node's named connection", |h| {
        has_label(h, "switchboard-hub:node-a") && has_label(h, "switchboard-dashboard")
    });
    assert!(!has_label(&h, "Subscribers about to be cut"));

    // A subscriber that never reads, filled to 80 % of a 1 MB hard limit.
    let url = redis.url();
    let channel = format!("{prefix}stalled");
    let _stalled = rt.block_on(async {
        redis_cmd(
            &url,
            &["CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 0 0"],
        )
        .await
        .unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket
            .connect(format!("127.0.0.1:{}", redis.port()).parse().unwrap())
            .await
            .unwrap();
        use tokio::io::AsyncWriteExt;
        stream
            .write_all(&resp_command(&["CLIENT", "SETNAME", "stalled-consumer"]))
            .await
            .unwrap();
        stream
            .write_all(&resp_command(&["SUBSCRIBE", &channel]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut publisher = client.get_multiplexed_async_connection().await.unwrap();
        let payload = vec![b'x'; 32 * 1024];
        let mut filled = 0;
        for _ in 0..1000 {
            let _: i64 = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&payload)
                .query_async(&mut publisher)
                .await
                .unwrap();
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut publisher)
                .await
                .unwrap();
            let omem: u64 = list
                .lines()
                .find(|l| l.contains("name=stalled-consumer "))
                .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("omem=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            filled = omem;
            if omem >= 1024 * 1024 * 80 / 100 {
                break;
            }
        }
        assert!(
            filled >= 1024 * 1024 * 80 / 100,
            "the output buffer reached only {filled} bytes"
        );
        stream
    });
    frames_until(&mut h, DEADLINE, "the warning in words", |h| {
        has_label(h, "Subscribers about to be cut")
            && has_label(h, "stalled-consumer")
            && has_label(
                h,
                "Redis will disconnect this subscriber when its output buffer passes 1 MB: it is at",
            )
    });
}
