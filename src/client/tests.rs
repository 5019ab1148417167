//! The client against scripted fake servers (a raw WebSocket or HTTP peer on 127.0.0.1:0), so
//! framing, routing, queue limits and timeouts are checked without a hub node.

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::*;

const STEP: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

type ServerWs = WebSocketStream<TcpStream>;

/// A WebSocket server that accepts one connection and runs `script` on it. Returns its hub URL.
async fn fake_ws<F, Fut>(script: F) -> (String, JoinHandle<()>)
where
    F: FnOnce(ServerWs) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chat", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        script(ws).await;
    });
    (url, task)
}

/// The next data message's bytes (pings/pongs skipped); `None` at close or end.
async fn next_data(ws: &mut ServerWs) -> Option<Vec<u8>> {
    loop {
        match within("the server reading", ws.next()).await? {
            Ok(Message::Text(t)) => return Some(t.as_bytes().to_vec()),
            Ok(Message::Binary(b)) => return Some(b.to_vec()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads the handshake request (asserting it) and answers `response` in a Text message.
async fn accept_handshake(ws: &mut ServerWs, protocol: &str, response: &[u8]) {
    let request = next_data(ws).await.expect("a handshake request");
    assert_eq!(request, handshake::request(protocol, 1));
    ws.send(Message::text(String::from_utf8(response.to_vec()).unwrap()))
        .await
        .unwrap();
}

fn raw(protocol: Protocol, message: &HubMessage) -> Vec<u8> {
    protocol.encode(message)
}

fn skip_negotiation(protocol: Protocol) -> ClientOptions {
    ClientOptions {
        negotiate: false,
        ..ClientOptions::with_protocol(protocol)
    }
}

#[tokio::test]
async fn messages_after_the_handshake_in_the_same_frame_are_delivered() {
    let (url, server) = fake_ws(|mut ws| async move {
        let mut response = b"{}\x1e".to_vec();
        response.extend(raw(
            Protocol::Json,
            &HubMessage::invocation("hello", str_args(&["x"])),
        ));
        accept_handshake(&mut ws, "json", &response).await;
        let _ = next_data(&mut ws).await;
    })
    .await;
    let mut client = within(
        "connect",
        HubClient::connect(&url, skip_negotiation(Protocol::Json)),
    )
    .await
    .unwrap();
    assert_eq!(client.connection_id(), None);
    assert_eq!(
        client.recv_timeout(STEP).await,
        Some(ClientEvent::Invocation {
            target: "hello".to_string(),
            arguments: str_args(&["x"])
        })
    );
    within("close", client.close()).await;
    within("server", server).await.unwrap();
}

#[tokio::test]
async fn invoke_gets_its_completion_even_when_split_across_websocket_messages() {
    for protocol in Protocol::ALL {
        let (url, server) = fake_ws(move |mut ws| async move {
            accept_handshake(&mut ws, protocol.name(), b"{}\x1e").await;
            let request = next_data(&mut ws).await.unwrap();
            let mut framer = Framer::new(protocol.frame_kind(), 1 << 20);
            framer.push(&request);
            let body = framer.next_frame().unwrap().unwrap();
            let Some(HubMessage::Invocation {
                invocation_id: Some(id),
                target,
                arguments,
                ..
            }) = protocol.decode(&body).unwrap()
            else {
                panic!("expected a blocking invocation");
            };
            assert_eq!(target, "Echo");
            let reply = raw(
                protocol,
                &HubMessage::completion(id, CompletionResult::Value(arguments[0].clone())),
            );
            let (a, b) = reply.split_at(reply.len() / 2);
            for part in [a, b] {
                let message = if protocol.is_binary() {
                    Message::binary(part.to_vec())
                } else {
                    Message::text(String::from_utf8(part.to_vec()).unwrap())
                };
                ws.send(message).await.unwrap();
            }
            let _ = next_data(&mut ws).await;
        })
        .await;
        let client = within("connect", HubClient::connect(&url, skip_negotiation(protocol)))
            .await
            .unwrap();
        let result = client.invoke("Echo", str_args(&["ping ✓"])).await.unwrap();
        assert_eq!(
            result,
            CompletionResult::Value(Value::from("ping ✓")),
            "{protocol:?}"
        );
        within("close", client.close()).await;
        within("server", server).await.unwrap();
    }
}

#[tokio::test]
async fn messagepack_handshake_response_may_come_in_a_binary_frame_with_messages() {
    let (url, server) = fake_ws(|mut ws| async move {
        let request = next_data(&mut ws).await.unwrap();
        assert_eq!(request, handshake::request("messagepack", 1));
        let mut response = b"{}\x1e".to_vec();
        response.extend(raw(Protocol::MessagePack, &HubMessage::Ping));
        response.extend(raw(
            Protocol::MessagePack,
            &HubMessage::invocation("m", vec![Value::from(7)]),
        ));
        ws.send(Message::binary(response)).await.unwrap();
        let _ = next_data(&mut ws).await;
    })
    .await;
    let mut client = within(
        "connect",
        HubClient::connect(&url, skip_negotiation(Protocol::MessagePack)),
    )
    .await
    .unwrap();
    assert_eq!(
        client.recv_timeout(STEP).await,
        Some(ClientEvent::Invocation {
            target: "m".to_string(),
            arguments: vec![Value::from(7)]
        })
    );
    assert_eq!(client.pings_received(), 1);
    within("close", client.close()).await;
    within("server", server).await.unwrap();
}

#[tokio::test]
async fn a_handshake_error_is_reported_with_the_server_text() {
    let (url, _server) = fake_ws(|mut ws| async move {
        accept_handshake(
            &mut ws,
            "json",
            b"{\"error\":\"The protocol 'json' is not supported.\"}\x1e",
        )
        .await;
        let _ = ws.close(None).await;
    })
    .await;
    let error = within(
        "connect",
        HubClient::connect(&url, skip_negotiation(Protocol::Json)),
    )
    .await
    .unwrap_err();
    match error {
        ClientError::Handshake(text) => assert_eq!(text, "The protocol 'json' is not supported."),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_close_message_is_delivered_then_the_disconnect() {
    let (url, server) = fake_ws(|mut ws| async move {
        accept_handshake(&mut ws, "json", b"{}\x1e").await;
        ws.send(Message::text(
            "{\"type\":7,\"error\":\"bye\",\"allowReconnect\":true}\x1e",
        ))
        .await
        .unwrap();
        // The client answers with a WebSocket close.
        assert_eq!(next_data(&mut ws).await, None);
    })
    .await;
    let mut client = within(
        "connect",
        HubClient::connect(&url, skip_negotiation(Protocol::Json)),
    )
    .await
    .unwrap();
    assert_eq!(
        client.recv_timeout(STEP).await,
        Some(ClientEvent::Close {
            error: Some("bye".to_string()),
            allow_reconnect: true
        })
    );
    match client.recv_timeout(STEP).await {
        Some(ClientEvent::Disconnected { reason }) => assert!(reason.contains("bye"), "{reason}"),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert_eq!(client.recv_timeout(Duration::from_millis(10)).await, None);
    let error = client.invoke("Echo", vec![]).await.unwrap_err();
    assert!(matches!(error, ClientError::Closed(_)), "{error:?}");
    within("server", server).await.unwrap();
}

#[tokio::test]
async fn a_full_inbox_drops_and_counts_events_without_stalling_completions() {
    let (url, server) = fake_ws(|mut ws| async move {
        accept_handshake(&mut ws, "json", b"{}\x1e").await;
        let request = next_data(&mut ws).await.unwrap();
        assert!(
            request.starts_with(b"{\"type\":1,\"invocationId\":\"0\""),
            "{request:?}"
        );
        let mut burst = Vec::new();
        for i in 0..5 {
            burst.extend(raw(
                Protocol::Json,
                &HubMessage::invocation("n", vec![Value::from(i)]),
            ));
        }
        burst.extend(raw(
            Protocol::Json,
            &HubMessage::completion("0", CompletionResult::Void),
        ));
        ws.send(Message::text(String::from_utf8(burst).unwrap()))
            .await
            .unwrap();
        let _ = next_data(&mut ws).await;
    })
    .await;
    let options = ClientOptions {
        inbox_capacity: 2,
        ..skip_negotiation(Protocol::Json)
    };
    let mut client = within("connect", HubClient::connect(&url, options))
        .await
        .unwrap();
    assert_eq!(
        client.invoke("Sync", vec![]).await.unwrap(),
        CompletionResult::Void
    );
    assert_eq!(client.dropped(), 3);
    for i in 0..2 {
        assert_eq!(
            client.try_recv(),
            Some(ClientEvent::Invocation {
                target: "n".to_string(),
                arguments: vec![Value::from(i)]
            })
        );
    }
    assert_eq!(client.try_recv(), None);
    within("close", client.close()).await;
    within("server", server).await.unwrap();
}

#[tokio::test]
async fn the_client_pings_and_answers_client_result_invocations() {
    let (url, server) = fake_ws(|mut ws| async move {
        accept_handshake(&mut ws, "json", b"{}\x1e").await;
        ws.send(Message::text(
            "{\"type\":1,\"invocationId\":\"s1\",\"target\":\"GetResult\",\"arguments\":[]}\x1e",
        ))
        .await
        .unwrap();
        let reply = next_data(&mut ws).await.unwrap();
        assert_eq!(
            reply,
            b"{\"type\":3,\"invocationId\":\"s1\",\"error\":\"Client didn't provide a result.\"}\x1e"
        );
        // With a 50 ms keep-alive the next thing the client sends is a Ping.
        assert_eq!(next_data(&mut ws).await.unwrap(), b"{\"type\":6}\x1e");
        let _ = next_data(&mut ws).await;
    })
    .await;
    let options = ClientOptions {
        keep_alive: Duration::from_millis(50),
        ..skip_negotiation(Protocol::Json)
    };
    let mut client = within("connect", HubClient::connect(&url, options))
        .await
        .unwrap();
    assert!(matches!(
        client.recv_timeout(STEP).await,
        Some(ClientEvent::Invocation { target, .. }) if target == "GetResult"
    ));
    within("server", server).await.unwrap();
    drop(client);
}

#[tokio::test]
async fn a_silent_server_times_out_and_a_lost_completion_times_out_the_invoke() {
    let (url, server) = fake_ws(|mut ws| async move {
        accept_handshake(&mut ws, "json", b"{}\x1e").await;
        // Read everything, answer nothing.
        while next_data(&mut ws).await.is_some() {}
    })
    .await;
    let options = ClientOptions {
        server_timeout: Duration::from_millis(400),
        invoke_timeout: Duration::from_millis(100),
        ..skip_negotiation(Protocol::Json)
    };
    let mut client = within("connect", HubClient::connect(&url, options))
        .await
        .unwrap();
    let error = client.invoke("Echo", str_args(&["x"])).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout(_)), "{error:?}");
    match client.recv_timeout(STEP).await {
        Some(ClientEvent::Disconnected { reason }) => assert!(reason.contains("server timeout"), "{reason}"),
        other => panic!("expected Disconnected, got {other:?}"),
    }
    assert!(!client.is_connected());
    within("server", server).await.unwrap();
}

#[tokio::test]
async fn send_and_send_raw_write_one_websocket_message_each() {
    let (url, server) = fake_ws(|mut ws| async move {
        accept_handshake(&mut ws, "messagepack", b"{}\x1e").await;
        let sent = next_data(&mut ws).await.unwrap();
        assert_eq!(
            sent,
            raw(
                Protocol::MessagePack,
                &HubMessage::invocation("Send", str_args(&["a", "b"]))
            )
        );
        match within("raw", ws.next()).await.unwrap().unwrap() {
            Message::Binary(b) => assert_eq!(&b[..], b"\x01\x02garbage"),
            other => panic!("expected binary, got {other:?}"),
        }
        match within("raw", ws.next()).await.unwrap().unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), "{not json\x1e"),
            other => panic!("expected text, got {other:?}"),
        }
        let _ = next_data(&mut ws).await;
    })
    .await;
    let client = within(
        "connect",
        HubClient::connect(&url, skip_negotiation(Protocol::MessagePack)),
    )
    .await
    .unwrap();
    client.send("Send", str_args(&["a", "b"])).await.unwrap();
    client.send_raw(b"\x01\x02garbage".to_vec(), true).await.unwrap();
    client.send_raw(b"{not json\x1e".to_vec(), false).await.unwrap();
    within("close", client.close()).await;
    within("server", server).await.unwrap();
}

#[test]
fn invalid_utf8_raw_text_goes_out_as_a_text_frame() {
    match connection::raw_message(vec![0xff, 0xfe], false) {
        Message::Frame(frame) => {
            assert_eq!(frame.payload(), &[0xff, 0xfe]);
            assert!(frame.header().is_final);
        }
        other => panic!("expected a raw frame, got {other:?}"),
    }
    assert!(matches!(
        connection::raw_message(b"ok".to_vec(), false),
        Message::Text(_)
    ));
    assert!(matches!(
        connection::raw_message(vec![0xff], true),
        Message::Binary(_)
    ));
}

/// An HTTP server answering every request with `response`; returns its hub URL.
async fn fake_http(response: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chat", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    url
}

#[tokio::test]
async fn negotiate_errors_carry_the_server_answer() {
    let url = fake_http("HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{\"error\":\"nope\"}").await;
    let error = within("connect", HubClient::connect(&url, ClientOptions::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::NegotiateRefused(text) if text == "nope"),
        "{error:?}"
    );

    let url = fake_http("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone").await;
    let error = within("connect", HubClient::connect(&url, ClientOptions::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Negotiate { status: 404, body, .. } if body == "gone"),
        "{error:?}"
    );

    let url = fake_http("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n[1,2,3]").await;
    let error = within("connect", HubClient::connect(&url, ClientOptions::default()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ClientError::NegotiateResponse { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn connecting_to_nothing_fails_fast() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chat", listener.local_addr().unwrap());
    drop(listener);
    let error = within("connect", HubClient::connect(&url, ClientOptions::default()))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Io { .. }), "{error:?}");
    let error = within(
        "connect",
        HubClient::connect(&url, skip_negotiation(Protocol::Json)),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ClientError::Io { .. }), "{error:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_the_handshake_hits_the_connect_timeout() {
    let (url, _server) = fake_ws(|mut ws| async move {
        let _ = next_data(&mut ws).await;
        tokio::time::sleep(STEP).await;
    })
    .await;
    let options = ClientOptions {
        connect_timeout: Duration::from_millis(200),
        ..skip_negotiation(Protocol::Json)
    };
    let error = within("connect", HubClient::connect(&url, options))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Timeout(_)), "{error:?}");
}

#[tokio::test]
// The upgrade callback's signature is tungstenite's, large error type included.
#[allow(clippy::result_large_err)]
async fn negotiate_then_websocket_with_the_token_and_the_user() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/chat", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "negotiate request cut short");
            request.extend_from_slice(&buf[..n]);
        }
        let request = String::from_utf8(request).unwrap();
        assert!(
            request
                .starts_with("POST /chat/negotiate?negotiateVersion=1&user=Zo%C3%AB&room=a%20b HTTP/1.1\r\n"),
            "{request}"
        );
        let body = r#"{"negotiateVersion":1,"connectionId":"ID-1","connectionToken":"TOK+/","availableTransports":[{"transport":"WebSockets","transferFormats":["Text","Binary"]}]}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        drop(stream);

        let (stream, _) = listener.accept().await.unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen_in_callback = seen.clone();
        let callback =
            move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                  resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                *seen_in_callback.lock().unwrap() = req.uri().to_string();
                Ok(resp)
            };
        let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback)
            .await
            .unwrap();
        assert_eq!(
            *seen.lock().unwrap(),
            "/chat?id=TOK%2B%2F&user=Zo%C3%AB&room=a%20b"
        );
        accept_handshake(&mut ws, "json", b"{}\x1e").await;
        let _ = next_data(&mut ws).await;
    });
    let options = ClientOptions {
        user: Some("Zoë".to_string()),
        extra_query: vec![("room".to_string(), "a b".to_string())],
        ..ClientOptions::default()
    };
    let client = within("connect", HubClient::connect(&url, options))
        .await
        .unwrap();
    assert_eq!(client.connection_id(), Some("ID-1"));
    within("close", client.close()).await;
    within("server", server).await.unwrap();
}

#[test]
fn a_401_names_the_refusal_never_the_token() {
    let token = NodeToken::new("tok-SECRET").unwrap();
    let refused = ClientError::unauthorized(
        "http://h/chat/negotiate",
        "the token tok-SECRET has expired\nsecond line",
        Some(&token),
    );
    let text = refused.to_string();
    assert!(matches!(refused, ClientError::TokenRefused { .. }));
    assert!(
        text.contains("the node refused the token: the token *** has expired"),
        "{text}"
    );
    assert!(
        !text.contains("tok-SECRET") && !text.contains("second line"),
        "{text}"
    );
    let required = ClientError::unauthorized("http://h/chat", "", None).to_string();
    assert!(required.contains("requires a token"), "{required}");
    assert!(required.contains("HTTP 401 without a reason"), "{required}");
    let long = ClientError::unauthorized("u", &"x".repeat(1000), Some(&token)).to_string();
    assert!(long.len() < 400, "{long}");
}

#[test]
fn a_redirect_keeps_the_token_on_the_same_origin_only() {
    assert!(same_origin("http://h:5000/chat", "ws://H:5000/other"));
    assert!(same_origin("http://h/chat", "http://h:80/x"));
    assert!(!same_origin("http://h:5000/chat", "http://h:5001/chat"));
    assert!(!same_origin("http://h:5000/chat", "https://h:5000/chat"));
    assert!(!same_origin(
        "http://h:5000/chat",
        "http://evil.example:5000/chat"
    ));
    assert!(!same_origin("http://h/chat", "not a url"));
}
