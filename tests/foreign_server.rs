//! The node shares a real Redis with a "foreign" ASP.NET Core server, played by this test: it
//! publishes payloads byte for byte as .NET writes them (the vectors), sends a group command and
//! expects the ack, and asks one of our clients for a client result (B.7).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::redis::{RedisServer, Tap, publish};
use common::{STEP, connect, expect_message, unique_prefix, vectors, within};
use futures_util::{SinkExt, StreamExt};
use switchboard::backplane::wire::{self, GroupAction, GroupCommand};
use switchboard::client::{connect_raw_ws, str_args};
use switchboard::hub::{BackplaneChoice, Node, NodeConfig, NodeHandle};
use switchboard::protocol::{HubMessage, Protocol, Value};
use tokio_tungstenite::tungstenite::Message;

const HUB: &str = "Switchboard.ChatHub";
const FOREIGN: &str = "FakeServer_0123456789abcdef0123456789abcdef";

async fn start(redis: &RedisServer, prefix: &str) -> NodeHandle {
    let mut config = NodeConfig::new("node-a");
    config.channel_prefix = prefix.to_string();
    let node = Node::start(config, BackplaneChoice::RedisUrl(redis.url()))
        .await
        .unwrap();
    let mut status = node.backplane_status();
    within("connected", status.wait_for(|s| s.state.is_up()))
        .await
        .unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotnet_payloads_are_delivered_to_both_protocols() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let node = start(&redis, &prefix).await;
    let mut json = connect(&node, Protocol::Json, None).await;
    let mut msgpack = connect(&node, Protocol::MessagePack, None).await;

    // SendAll("target") exactly as a .NET server with json + messagepack writes it.
    let payload = vectors::get("redis.invocation.real.all").bytes();
    let receivers = publish(&redis.url(), &format!("{prefix}{HUB}:all"), &payload).await;
    assert_eq!(receivers, 1, "our node is the only subscriber");
    assert_eq!(
        expect_message(&mut json, "target", STEP).await,
        Vec::<Value>::new()
    );
    assert_eq!(
        expect_message(&mut msgpack, "target", STEP).await,
        Vec::<Value>::new()
    );

    // AllExcept for a json-only hub: our msgpack client cannot be served from it (logged), the
    // json client gets it unless excluded.
    let except = vectors::get("redis.invocation.real.all_except").bytes();
    publish(&redis.url(), &format!("{prefix}{HUB}:all"), &except).await;
    expect_message(&mut json, "target", STEP).await;
    // The marker: an All that both protocols can be served from, published after it on the same
    // channel; the first thing the msgpack client receives must be the marker.
    let marker = HubMessage::invocation("ReceiveMessage", str_args(&["marker", "after AllExcept"]));
    let (json_marker, msgpack_marker) = (
        Protocol::Json.encode(&marker),
        Protocol::MessagePack.encode(&marker),
    );
    let payload = wire::encode_invocation(
        &[],
        &[("json", &json_marker), ("messagepack", &msgpack_marker)],
        None,
    );
    publish(&redis.url(), &format!("{prefix}{HUB}:all"), &payload).await;
    for client in [&mut json, &mut msgpack] {
        assert_eq!(
            expect_message(client, "ReceiveMessage", STEP).await,
            str_args(&["marker", "after AllExcept"])
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_from_another_server_are_applied_and_acked() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let node = start(&redis, &prefix).await;
    let mut tap = Tap::start(&redis.url(), &format!("{prefix}*")).await;
    let mut client = connect(&node, Protocol::Json, None).await;
    let id = common::connection_id(&client).await;

    let command = GroupCommand {
        id: 77,
        server_name: FOREIGN.to_string(),
        action: GroupAction::Add,
        group: "dotnet-group".into(),
        connection_id: id.clone(),
    };
    publish(
        &redis.url(),
        &format!("{prefix}{HUB}:internal:groups"),
        &wire::encode_group_command(&command),
    )
    .await;
    let ack_channel = format!("{prefix}{HUB}:internal:ack:{FOREIGN}");
    let (_, ack) = tap
        .wait_for(|ch, _| ch == ack_channel, STEP)
        .await
        .expect("ack published");
    assert_eq!(&ack[..], &[0x91, 77], "ack = [77]");

    // The group now reaches our client, as the .NET server's Clients.Group would.
    let message = HubMessage::invocation("ReceiveMessage", str_args(&["dotnet", "hello group"]));
    let json = Protocol::Json.encode(&message);
    let payload = wire::encode_invocation(&[], &[("json", &json)], None);
    publish(
        &redis.url(),
        &format!("{prefix}{HUB}:group:dotnet-group"),
        &payload,
    )
    .await;
    assert_eq!(
        expect_message(&mut client, "ReceiveMessage", STEP).await,
        str_args(&["dotnet", "hello group"])
    );

    // A command for a connection we do not own is ignored (no ack from us). The marker: a command
    // for our own connection published after it on the same channel, whose ack must be the
    // first one that comes.
    let foreign_conn = GroupCommand {
        connection_id: "not-ours".into(),
        id: 78,
        ..command.clone()
    };
    let ours_again = GroupCommand { id: 79, ..command };
    for next in [&foreign_conn, &ours_again] {
        publish(
            &redis.url(),
            &format!("{prefix}{HUB}:internal:groups"),
            &wire::encode_group_command(next),
        )
        .await;
    }
    let acks_before = tap
        .count_before_marker(
            |ch, p| ch == ack_channel && p == [0x91, 79],
            |ch, p| ch == ack_channel && p == [0x91, 78],
            STEP,
        )
        .await;
    assert_eq!(acks_before, 0, "the foreign connection's command was acked");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_results_requested_by_another_server_are_returned() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix();
    let node = start(&redis, &prefix).await;
    let mut tap = Tap::start(&redis.url(), &format!("{prefix}*")).await;

    // A raw JSON client that answers the server's invocation itself.
    let mut ws = connect_raw_ws(&format!("ws://{}/chat", node.local_addr()))
        .await
        .unwrap();
    ws.send(Message::Text(
        "{\"protocol\":\"json\",\"version\":1}\u{1e}".into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws).await, "{}\u{1e}");
    ws.send(Message::Text(
        "{\"type\":1,\"invocationId\":\"1\",\"target\":\"GetConnectionId\",\"arguments\":[]}\u{1e}".into(),
    ))
    .await
    .unwrap();
    let reply = next_text(&mut ws).await;
    let reply_doc: serde_json::Value = serde_json::from_str(reply.trim_end_matches('\u{1e}')).unwrap();
    let id = reply_doc["result"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 22, "{reply}");

    let return_channel = format!("{HUB}:internal:return:{FOREIGN}");
    for (invocation_id, answer) in [("inv-1", Some("42")), ("inv-2", None)] {
        let request = HubMessage::Invocation {
            headers: vec![],
            invocation_id: Some(invocation_id.into()),
            target: "GetAnswer".into(),
            arguments: vec![],
            stream_ids: None,
        };
        let json = Protocol::Json.encode(&request);
        let mp = Protocol::MessagePack.encode(&request);
        let payload = wire::encode_invocation(
            &[],
            &[("json", &json), ("messagepack", &mp)],
            Some((invocation_id, &return_channel)),
        );
        publish(&redis.url(), &format!("{prefix}{HUB}:connection:{id}"), &payload).await;
        assert_eq!(next_text(&mut ws).await.as_bytes(), &json[..]);
        let Some(answer) = answer else { break };
        let completion =
            format!("{{\"type\":3,\"invocationId\":\"{invocation_id}\",\"result\":{answer}}}\u{1e}");
        ws.send(Message::Text(completion.clone().into())).await.unwrap();
        let wire_return = format!("{prefix}{return_channel}");
        let (_, payload) = tap
            .wait_for(|ch, _| ch == wire_return, STEP)
            .await
            .expect("result returned");
        let returned = wire::decode_completion(&payload).unwrap();
        assert_eq!(returned.protocol, "json");
        assert_eq!(&returned.message[..], completion.as_bytes());
    }
    // The second request is still pending when the client leaves: the caller is told.
    drop(ws);
    let wire_return = format!("{prefix}{return_channel}");
    let (_, payload) = tap
        .wait_for(|ch, _| ch == wire_return, STEP)
        .await
        .expect("disconnect returned");
    let returned = wire::decode_completion(&payload).unwrap();
    assert_eq!(
        std::str::from_utf8(&returned.message).unwrap(),
        "{\"type\":3,\"invocationId\":\"inv-2\",\"error\":\"Connection disconnected.\"}\u{1e}"
    );
    node.shutdown().await;
}

async fn next_text(ws: &mut switchboard::client::NodeWebSocket) -> String {
    loop {
        match within("frame", ws.next()).await {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}
