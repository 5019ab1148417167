//! Counted publishes on a real Redis (`Backplane::publish_counted`): the node sets who hears
//! their outcomes after the link may already be up, and every queued publish is heard of exactly
//! once, as a success while Redis answers and as a failure when it is gone; a publish that cannot
//! be queued says so at once. And the direct path past the node's inbox: messages that come one
//! per read skip it, messages that come several per read take it, and order holds across both
//! (without the inbox's "nothing waits" rule the last of a burst overtakes the rest: checked).
//!
//! Real parts: a test-owned `redis-server` and the Redis backplane link.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use common::within_for;
use switchboard::backplane::redis::RedisBackplane;
use switchboard::backplane::{Backplane, BackplaneStatus, Counted};
use switchboard::redis_conn::RedisSpec;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Outcomes as the test hears them (errors as text).
type Heard = mpsc::UnboundedReceiver<Result<(), String>>;

/// A Redis backplane link that is up, with what the test watches of it.
struct Link {
    backplane: RedisBackplane,
    status: watch::Receiver<BackplaneStatus>,
    cancel: CancellationToken,
    /// The node's inbox, kept open (a closed one stops the link); nothing here reads it.
    _messages: mpsc::Receiver<switchboard::backplane::BackplaneMessage>,
}

async fn link_up(redis: &RedisServer, name: &str) -> Link {
    let (inbox, messages) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let spec = RedisSpec::parse(&redis.url(), &Default::default()).unwrap();
    let backplane = RedisBackplane::start(spec, name, inbox, cancel.clone()).unwrap();
    let mut status = backplane.status();
    wait_until(&mut status, "the link comes up", true, Duration::from_secs(10)).await;
    Link {
        backplane,
        status,
        cancel,
        _messages: messages,
    }
}

/// Waits, at most `limit`, for the link to be up (or down).
async fn wait_until(status: &mut watch::Receiver<BackplaneStatus>, what: &str, up: bool, limit: Duration) {
    within_for(what, limit, status.wait_for(|s| s.state.is_up() == up))
        .await
        .unwrap();
}

/// Sets the backplane's publish outcome to one the test hears.
fn hear(backplane: &RedisBackplane) -> Heard {
    let (heard_tx, heard) = mpsc::unbounded_channel();
    backplane.set_publish_outcome(Arc::new(move |outcome| {
        let _ = heard_tx.send(outcome.map_err(|e| e.to_string()));
    }));
    heard
}

/// The next outcome heard.
async fn next(heard: &mut Heard) -> Result<(), String> {
    within_for("an outcome", Duration::from_secs(10), heard.recv())
        .await
        .unwrap()
}

fn queued(backplane: &RedisBackplane, payload: &str) -> bool {
    queued_on(backplane, "counted:test", payload)
}

fn queued_on(backplane: &RedisBackplane, channel: &str, payload: &str) -> bool {
    matches!(
        backplane.publish_counted(channel, payload.as_bytes()),
        Counted::Queued
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counted_publishes_are_heard_once_each_even_when_the_outcome_is_set_after_the_link_is_up() {
    let mut redis = RedisServer::start().await;
    let link = link_up(&redis, "counted-test").await;
    let (backplane, cancel) = (&link.backplane, &link.cancel);

    // Nobody hears outcomes yet: the caller is told to wait for its publish instead.
    assert!(matches!(
        backplane.publish_counted("counted:test", b"early"),
        Counted::Unsupported
    ));

    // Set after the link's command connection was made (the race a node start can lose).
    let mut heard = hear(backplane);
    for i in 0..100 {
        assert!(queued(backplane, &format!("m{i}")), "publish {i} is queued");
    }
    for i in 0..100 {
        assert_eq!(next(&mut heard).await, Ok(()), "publish {i} succeeded");
    }

    // Redis gone: a publish is either refused at once (the link already knows) or queued and
    // then heard of as a failure, never lost and never heard of twice.
    redis.kill();
    let mut failed_now = 0;
    let mut queued = 0;
    for i in 0..20 {
        match backplane.publish_counted("counted:test", format!("lost{i}").as_bytes()) {
            Counted::Failed(_) => failed_now += 1,
            Counted::Queued => queued += 1,
            Counted::Unsupported => panic!("the outcome is set"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..queued {
        assert!(
            next(&mut heard).await.is_err(),
            "a publish to a dead Redis is heard of as failed"
        );
    }
    assert_eq!(failed_now + queued, 20);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(heard.try_recv().is_err(), "nothing is heard of twice");
    cancel.cancel();
}

/// Redis stops answering (`CLIENT PAUSE`, longer than the node's 2 s limit): the command
/// connection is failed as a whole, every publish waiting on it is heard of once as failed with
/// the reason, the link leaves `connected`; once Redis answers again the link reconnects and
/// counted publishes succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_answers_nothing_fails_the_waiting_publishes_and_the_link_recovers() {
    let redis = RedisServer::start().await;
    let mut link = link_up(&redis, "counted-pause").await;
    let (backplane, status, cancel) = (&link.backplane, &mut link.status, &link.cancel);
    let mut heard = hear(backplane);
    assert!(queued(backplane, "before"));
    assert_eq!(next(&mut heard).await, Ok(()));

    // Every command of every client is held for 5 s.
    common::redis::redis_cmd(&redis.url(), &["CLIENT", "PAUSE", "5000", "ALL"])
        .await
        .unwrap();
    for i in 0..5 {
        assert!(
            queued(backplane, &format!("held{i}")),
            "publish {i} is queued while Redis looks up"
        );
    }
    for i in 0..5 {
        let error = next(&mut heard)
            .await
            .expect_err("a publish Redis never answered fails");
        assert!(error.contains("answered nothing"), "publish {i}: {error}");
    }
    wait_until(status, "the link is down", false, Duration::from_secs(10)).await;

    // Redis answers again: the link comes back and counted publishes succeed.
    wait_until(status, "the link comes back", true, Duration::from_secs(20)).await;
    assert!(queued(backplane, "after"));
    assert_eq!(next(&mut heard).await, Ok(()));
    cancel.cancel();
}

/// The direct path past the inbox (`Inbox::try_direct`) on a real Redis: messages published in
/// bursts (several per read: the inbox) and one at a time (the direct receiver) all arrive once,
/// in publish order across the switches between the two paths, and both paths are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_keeps_up_skips_its_inbox_and_order_holds_across_both_paths() {
    use std::sync::Mutex;
    use switchboard::backplane::{DirectReceiver, Inbox};

    /// Every message in the order the node took it, with the path it came by.
    #[derive(Default)]
    struct Log(Mutex<Vec<(u32, &'static str)>>);
    impl Log {
        fn note(&self, payload: &[u8], path: &'static str) {
            if let Some(n) = std::str::from_utf8(payload).ok().and_then(|p| p.parse().ok()) {
                self.0.lock().unwrap().push((n, path));
            }
        }
    }
    struct Direct(Arc<Log>);
    impl DirectReceiver for Direct {
        fn receive(&self, _channel: &str, payload: &[u8]) {
            self.0.note(payload, "direct");
        }
    }

    let redis = RedisServer::start().await;
    let log = Arc::new(Log::default());
    let (inbox, mut rx) = Inbox::with_control(8192, 16, vec!["order:control".to_string()]);
    let direct: Arc<dyn DirectReceiver> = Arc::new(Direct(log.clone()));
    inbox.set_direct_receiver(Arc::downgrade(&direct));
    // The node's receive loop, reduced to what the order needs: take a queued message, note it,
    // report it handled.
    let queued = tokio::spawn({
        let log = log.clone();
        async move {
            while let Some(message) = rx.chat.recv().await {
                log.note(&message.payload, "inbox");
                rx.handled(1);
            }
        }
    });
    let cancel = CancellationToken::new();
    let spec = RedisSpec::parse(&redis.url(), &Default::default()).unwrap();
    let backplane = RedisBackplane::start(spec, "direct-order", inbox, cancel.clone()).unwrap();
    let mut status = backplane.status();
    wait_until(&mut status, "the link comes up", true, Duration::from_secs(10)).await;
    within_for(
        "the subscription",
        Duration::from_secs(10),
        backplane.subscribe("order:chat"),
    )
    .await
    .unwrap();
    let mut heard = hear(&backplane);

    // Bursts of 200 queued back to back (written together, so Redis pushes them together), each
    // followed by 20 sent one at a time.
    let mut sent = 0u32;
    let publish = |sent: &mut u32| {
        assert!(queued_on(&backplane, "order:chat", &sent.to_string()));
        *sent += 1;
    };
    for _ in 0..5 {
        for _ in 0..200 {
            publish(&mut sent);
        }
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            publish(&mut sent);
        }
    }
    for _ in 0..sent {
        assert_eq!(next(&mut heard).await, Ok(()));
    }
    within_for("every message", Duration::from_secs(10), async {
        while log.0.lock().unwrap().len() < sent as usize {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let taken = log.0.lock().unwrap().clone();
    // Each once, in publish order: the first place where that breaks, if any.
    let wrong = taken.iter().zip(0..sent).position(|((n, _), i)| *n != i);
    assert!(
        wrong.is_none() && taken.len() == sent as usize,
        "out of publish order at {wrong:?}: {:?}",
        wrong.map(|at| &taken[at.saturating_sub(2)..(at + 3).min(taken.len())])
    );
    let direct_count = taken.iter().filter(|(_, path)| *path == "direct").count();
    assert!(
        direct_count > 0 && direct_count < sent as usize,
        "both paths taken: {direct_count} of {sent} direct"
    );
    cancel.cancel();
    queued.abort();
}
