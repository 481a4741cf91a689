//! The client against the in-process emulator with its fault switches: nothing lost, retries
//! with fresh envelopes, the in-flight cap respected, 401 fatal, poison items isolated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::num::NonZeroU32;
use std::time::Duration;

use common::*;
use euid_map::client::{Api, Client, ClientConfig, ClientError, RetryPolicy};
use euid_map::config::Secret;
use euid_map::operator::faults::FaultPlan;
use euid_map::protocol::envelope::decode_secret;
use euid_map::record::{IdentityHash, IdentityKind, MapOutcome};

fn client_for(op: &euid_map::operator::LocalOperator, concurrency: usize) -> Client {
    Client::new(&ClientConfig {
        base_url: op.base_url(),
        api_key: Secret::new(API_KEY.to_string()),
        secret: decode_secret(SECRET).unwrap(),
        concurrency,
        rps: None,
        timeout: Duration::from_secs(5),
        api: Api::V3,
        retry: RetryPolicy {
            max_retries: 30,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            deadline: Duration::from_secs(120),
            stall: Duration::from_secs(120),
        },
    })
    .unwrap()
}

fn items(n: usize, salt: &str) -> Vec<(IdentityKind, IdentityHash)> {
    (0..n)
        .map(|i| {
            let kind = if i % 3 == 0 {
                IdentityKind::Phone
            } else {
                IdentityKind::Email
            };
            (
                kind,
                euid_map::normalize::sha256(format!("{salt}{i}@example.com").as_bytes()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_identity_is_answered_exactly_once_under_faults() {
    let mut c = config();
    c.faults = FaultPlan::parse(
        "429=0.1,500=0.1,503=0.1,reset=0.05,slow=0.05,text=0.1,nonce=0.1",
        Duration::from_millis(20),
    )
    .unwrap();
    let op = start(c).await;
    let clean = start(config()).await;
    let client = std::sync::Arc::new(client_for(&op, 8));
    let reference = client_for(&clean, 1);
    let mut handles = Vec::new();
    for b in 0..40 {
        let c = std::sync::Arc::clone(&client);
        handles.push(tokio::spawn(async move {
            let batch = items(250, &format!("b{b}-"));
            let out = c.map(&batch).await.unwrap();
            (batch, out)
        }));
    }
    for h in handles {
        let (batch, out) = h.await.unwrap();
        assert_eq!(out.len(), batch.len(), "one answer per identity");
        assert!(
            out.iter().all(|o| matches!(o, MapOutcome::Mapped { .. })),
            "faults are retried away, none lost"
        );
        let expected = reference.map(&batch).await.unwrap();
        for (a, b) in out.iter().zip(&expected) {
            let (MapOutcome::Mapped { raw_euid: x, .. }, MapOutcome::Mapped { raw_euid: y, .. }) =
                (a, b)
            else {
                panic!()
            };
            assert_eq!(
                x, y,
                "answers land on the right identity (same seed, same ids)"
            );
        }
    }
    let m = op.metrics_text();
    let retries = client
        .stats
        .retries
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(retries > 0, "faults caused retries");
    assert_eq!(
        euid_map::operator::metrics::sample(&m, "euid_emulator_nonce_reuse_total"),
        Some(0.0),
        "every attempt has a fresh nonce"
    );
    assert!(client.peak_in_flight() <= 8);
    op.stop().await;
    clean.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_never_exceeds_the_limit() {
    let mut c = config();
    c.max_in_flight = Some(3); // the emulator answers 429 beyond 3
    c.faults = FaultPlan::parse("slow=1.0", Duration::from_millis(5)).unwrap();
    let op = start(c).await;
    let client = std::sync::Arc::new(client_for(&op, 3));
    let mut hs = Vec::new();
    for b in 0..12 {
        let c = std::sync::Arc::clone(&client);
        hs.push(tokio::spawn(async move {
            c.map(&items(10, &format!("k{b}"))).await.unwrap()
        }));
    }
    for h in hs {
        assert!(h
            .await
            .unwrap()
            .iter()
            .all(|o| matches!(o, MapOutcome::Mapped { .. })));
    }
    assert!(
        client.peak_in_flight() <= 3,
        "peak {}",
        client.peak_in_flight()
    );
    assert_eq!(
        client
            .stats
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the window kept us under the cap"
    );
    op.stop().await;
}

#[tokio::test]
async fn wrong_key_is_fatal_at_once() {
    let op = start(config()).await;
    let client = Client::new(&ClientConfig {
        base_url: op.base_url(),
        api_key: Secret::new("wrong".to_string()),
        secret: decode_secret(SECRET).unwrap(),
        concurrency: 4,
        rps: Some(NonZeroU32::new(1000).unwrap()),
        timeout: Duration::from_secs(5),
        api: Api::V3,
        retry: RetryPolicy::default(),
    })
    .unwrap();
    let err = client.map(&items(5, "x")).await.unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized));
    assert!(err.is_fatal());
    assert_eq!(
        client
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "no retry storm on 401"
    );
    op.stop().await;
}

#[tokio::test]
async fn a_poison_item_is_isolated_by_splitting_the_batch() {
    let batch = items(64, "p");
    let poison = batch[37].1.to_base64();
    let mut c = config();
    c.poison = Some(poison);
    let op = start(c).await;
    let client = client_for(&op, 4);
    let out = client.map(&batch).await.unwrap();
    assert_eq!(out.len(), 64);
    let failed: Vec<usize> = out
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, MapOutcome::Failed(_)))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![37], "only the poison item fails");
    let MapOutcome::Failed(reason) = &out[37] else {
        panic!()
    };
    assert!(
        reason.contains("400") && reason.contains("Incorrect request format"),
        "{reason}"
    );
    op.stop().await;
}

#[tokio::test]
async fn a_batch_that_keeps_failing_is_reported_failed_not_dropped() {
    let mut c = config();
    c.faults = FaultPlan::parse("503=1.0", Duration::ZERO).unwrap();
    let op = start(c).await;
    let mut client_cfg = ClientConfig {
        base_url: op.base_url(),
        api_key: Secret::new(API_KEY.to_string()),
        secret: decode_secret(SECRET).unwrap(),
        concurrency: 2,
        rps: None,
        timeout: Duration::from_secs(5),
        api: Api::V3,
        retry: RetryPolicy::default(),
    };
    client_cfg.retry = RetryPolicy {
        max_retries: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(2),
        deadline: Duration::from_secs(30),
        stall: Duration::from_secs(30),
    };
    let client = Client::new(&client_cfg).unwrap();
    let out = client.map(&items(10, "f")).await.unwrap();
    assert_eq!(out.len(), 10);
    assert!(out
        .iter()
        .all(|o| matches!(o, MapOutcome::Failed(r) if r.contains("503"))));
    assert_eq!(
        client
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        4,
        "1 attempt + 3 retries"
    );
    op.stop().await;
}

/// Issue #9.8: bisection is bounded. When both halves of a rejected batch are rejected the
/// same way, the problem is not one item: the batch fails as a whole after three requests
/// instead of being split down to single identities.
#[tokio::test]
async fn a_batch_whose_halves_are_rejected_alike_is_not_split_further() {
    let mut batch = items(64, "h");
    let poison = batch[5];
    batch[50] = poison; // the bad value in both halves
    let mut c = config();
    c.poison = Some(poison.1.to_base64());
    let op = start(c).await;
    let client = client_for(&op, 4);
    let out = client.map(&batch).await.unwrap();
    assert_eq!(out.len(), 64);
    assert!(out.iter().all(|o| matches!(o, MapOutcome::Failed(_))));
    assert_eq!(
        client
            .stats
            .requests
            .load(std::sync::atomic::Ordering::Relaxed),
        3,
        "the batch, then each half once"
    );
    op.stop().await;
}
