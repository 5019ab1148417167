//! Counted publishes on a real Redis (`Backplane::publish_counted`): the node sets who hears
//! their outcomes after the link may already be up, and every queued publish is heard of exactly
//! once, as a success while Redis answers and as a failure when it is gone; a publish that cannot
//! be queued says so at once.
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
    matches!(
        backplane.publish_counted("counted:test", payload.as_bytes()),
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
