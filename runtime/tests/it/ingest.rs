//! Durable ingest against the real Redis: atomic dedupe-and-append, consumer groups, reclaiming
//! what a crashed consumer left, and dead-lettering what keeps failing.

use chrono::Utc;
use runtime::config::{RedisSettings, Secret};
use runtime::engine::ingest::{AfterFailure, Enqueued, Ingest, IngestSettings};
use runtime::redis::Redis;
use shared::channel::{ChannelKind, InboundMessage, ReplyTarget, Sender};
use shared::{ConnectionId, TenantId};
use uuid::Uuid;

use crate::support::redis_url;

async fn ingest(settings: IngestSettings) -> (Ingest, Redis) {
    let (redis, _task) = Redis::connect(&RedisSettings {
        url: Secret::new(redis_url()),
        key_prefix: format!("konstruct-test:{}", Uuid::new_v4().simple()),
    })
    .unwrap();
    let ingest = Ingest::new(redis.clone(), settings);
    ingest.prepare().await.unwrap();
    (ingest, redis)
}

fn message(tenant: TenantId, event: &str, text: &str) -> InboundMessage {
    InboundMessage {
        tenant_id: tenant,
        channel: ChannelKind::Slack,
        connection_id: ConnectionId::from_uuid(Uuid::nil()),
        agent_id: None,
        reply_to: ReplyTarget::Slack {
            channel: "C1".into(),
            thread_ts: "1700000000.000100".into(),
        },
        sender: Sender {
            id: "U1".into(),
            display_name: Some("Ada".into()),
        },
        text: text.into(),
        attachments: vec![],
        unsupported: None,
        provider_event_id: event.into(),
        received_at: Utc::now(),
        origin: shared::channel::Origin::Customer,
    }
}

#[tokio::test]
async fn the_same_provider_event_three_times_is_queued_once() {
    let (ingest, redis) = ingest(IngestSettings::default()).await;
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let m = message(tenant, "Ev1", "hello");
    let first = ingest.enqueue(&m).await.unwrap();
    assert!(matches!(first, Enqueued::Queued { .. }));
    assert_eq!(ingest.enqueue(&m).await.unwrap(), Enqueued::Duplicate);
    assert_eq!(ingest.enqueue(&m).await.unwrap(), Enqueued::Duplicate);
    let p = ingest.partition_of(tenant);
    assert_eq!(redis.stream_len(&ingest.stream(p)).await.unwrap(), 1);
    // Another event, or the same event id in another tenant, is new.
    assert!(matches!(
        ingest
            .enqueue(&message(tenant, "Ev2", "again"))
            .await
            .unwrap(),
        Enqueued::Queued { .. }
    ));
    let other = TenantId::from_uuid(Uuid::new_v4());
    assert!(matches!(
        ingest.enqueue(&message(other, "Ev1", "hi")).await.unwrap(),
        Enqueued::Queued { .. }
    ));
}

#[tokio::test]
async fn entries_arrive_in_order_and_stay_pending_until_done() {
    let (ingest, _redis) = ingest(IngestSettings::default()).await;
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let p = ingest.partition_of(tenant);
    for i in 0..5 {
        ingest
            .enqueue(&message(tenant, &format!("Ev{i}"), &format!("m{i}")))
            .await
            .unwrap();
    }
    let got = ingest.next(p, "node-a", 10, 100).await.unwrap();
    let texts: Vec<&str> = got.iter().map(|d| d.message.text.as_str()).collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(
        got[0].message,
        message(tenant, "Ev0", "m0").clone_with_time(got[0].message.received_at)
    );
    for d in &got[..3] {
        ingest.done(d).await.unwrap();
    }
    // Nothing new; the two not done are still pending and come back to whoever reclaims them.
    assert!(ingest.next(p, "node-a", 10, 10).await.unwrap().is_empty());
    let back = ingest.reclaim(p, "node-b", 0, 10).await.unwrap();
    let texts: Vec<&str> = back.iter().map(|d| d.message.text.as_str()).collect();
    assert_eq!(texts, ["m3", "m4"]);
}

#[tokio::test]
async fn a_crashed_consumers_entries_are_claimed_by_the_next_one() {
    let (ingest, _redis) = ingest(IngestSettings::default()).await;
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let p = ingest.partition_of(tenant);
    ingest
        .enqueue(&message(tenant, "Ev1", "lost?"))
        .await
        .unwrap();
    // node-a reads and "dies" without acknowledging.
    assert_eq!(ingest.next(p, "node-a", 10, 100).await.unwrap().len(), 1);
    // Not yet idle long enough: nothing to claim.
    assert!(
        ingest
            .reclaim(p, "node-b", 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claimed = ingest.reclaim(p, "node-b", 0, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].message.text, "lost?");
    ingest.done(&claimed[0]).await.unwrap();
    assert!(ingest.reclaim(p, "node-c", 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_entry_that_keeps_failing_is_dead_lettered_not_retried_forever() {
    let (ingest, redis) = ingest(IngestSettings {
        max_attempts: 3,
        ..IngestSettings::default()
    })
    .await;
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let p = ingest.partition_of(tenant);
    ingest
        .enqueue(&message(tenant, "Ev1", "poison"))
        .await
        .unwrap();
    let d = ingest.next(p, "node-a", 1, 100).await.unwrap().remove(0);
    assert_eq!(
        ingest.failed(&d, "llm down").await.unwrap(),
        AfterFailure::WillRetry { attempts: 1 }
    );
    assert_eq!(
        ingest.failed(&d, "llm down").await.unwrap(),
        AfterFailure::WillRetry { attempts: 2 }
    );
    assert_eq!(
        ingest.failed(&d, "llm down").await.unwrap(),
        AfterFailure::DeadLettered
    );
    assert!(
        ingest.reclaim(p, "node-b", 0, 10).await.unwrap().is_empty(),
        "acknowledged"
    );
    assert_eq!(
        redis
            .stream_len(&ingest.dead_letter_stream())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn one_tenant_always_lands_in_one_partition() {
    let (ingest, _redis) = ingest(IngestSettings::default()).await;
    let tenant = TenantId::from_uuid(Uuid::new_v4());
    let p = ingest.partition_of(tenant);
    for i in 0..20 {
        match ingest
            .enqueue(&message(tenant, &format!("E{i}"), "x"))
            .await
            .unwrap()
        {
            Enqueued::Queued { partition, .. } => assert_eq!(partition, p),
            Enqueued::Duplicate => panic!("not a duplicate"),
        }
    }
    let spread: std::collections::HashSet<u32> = (0..200)
        .map(|_| ingest.partition_of(TenantId::from_uuid(Uuid::new_v4())))
        .collect();
    assert_eq!(spread.len(), 8, "tenants spread over every partition");
}

trait WithTime {
    fn clone_with_time(&self, at: chrono::DateTime<Utc>) -> Self;
}

impl WithTime for InboundMessage {
    fn clone_with_time(&self, at: chrono::DateTime<Utc>) -> Self {
        InboundMessage {
            received_at: at,
            ..self.clone()
        }
    }
}

mod leases {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use runtime::engine::leases::Leases;

    use super::*;

    fn owned_by_all(nodes: &[&Leases]) -> (BTreeSet<u32>, usize) {
        let all: Vec<u32> = nodes.iter().flat_map(|n| n.owned()).collect();
        let count = all.len();
        (all.into_iter().collect(), count)
    }

    #[tokio::test]
    async fn one_node_owns_every_partition_and_two_nodes_split_them_without_overlap() {
        let (_, redis) = ingest(IngestSettings::default()).await;
        let ttl = Duration::from_secs(5);
        let mut a = Leases::new(redis.clone(), "node-a", 8, ttl);
        let changes = a.renew().await.unwrap();
        assert_eq!(changes.acquired.len(), 8, "alone, a node takes everything");
        assert_eq!(a.owned(), (0..8).collect::<Vec<_>>());

        // A second node joins: it finds nothing free at first, the first gives back its excess
        // on its next renewal, and the newcomer takes it.
        let mut b = Leases::new(redis.clone(), "node-b", 8, ttl);
        assert!(b.renew().await.unwrap().acquired.is_empty());
        let given_back = a.renew().await.unwrap().released;
        assert_eq!(given_back.len(), 4);
        b.renew().await.unwrap();
        a.renew().await.unwrap();
        assert_eq!((a.owned().len(), b.owned().len()), (4, 4));
        let (covered, count) = owned_by_all(&[&a, &b]);
        assert_eq!(count, 8, "no partition is owned twice");
        assert_eq!(covered, (0..8).collect::<BTreeSet<_>>());

        // A clean stop gives everything back at once.
        b.release_all().await.unwrap();
        a.renew().await.unwrap();
        assert_eq!(a.owned().len(), 8);
    }

    #[tokio::test]
    async fn a_node_that_stops_renewing_loses_its_partitions_when_the_lease_expires() {
        let (_, redis) = ingest(IngestSettings::default()).await;
        let ttl = Duration::from_millis(600);
        let mut a = Leases::new(redis.clone(), "node-a", 4, ttl);
        let mut b = Leases::new(redis.clone(), "node-b", 4, ttl);
        a.renew().await.unwrap();
        b.renew().await.unwrap();
        a.renew().await.unwrap();
        b.renew().await.unwrap();
        assert_eq!((a.owned().len(), b.owned().len()), (2, 2));
        let b_had = b.owned();

        // B dies (no release). Until its leases expire, A cannot take them.
        drop(b);
        a.renew().await.unwrap();
        assert_eq!(a.owned().len(), 2);
        // A lives on, renewing every third of the lease, until B's leases have expired.
        let mut acquired = Vec::new();
        let deadline = std::time::Instant::now() + ttl * 5;
        while a.owned().len() < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "B's leases never expired"
            );
            tokio::time::sleep(a.renew_every()).await;
            acquired.extend(a.renew().await.unwrap().acquired);
        }
        acquired.sort_unstable();
        assert_eq!(acquired, b_had, "A takes over exactly what B held");
        assert_eq!(a.owned().len(), 4);
    }

    #[tokio::test]
    async fn a_lease_that_lapsed_and_is_taken_again_counts_as_newly_acquired() {
        let (_, redis) = ingest(IngestSettings::default()).await;
        let ttl = Duration::from_millis(300);
        let mut a = Leases::new(redis.clone(), "node-a", 2, ttl);
        assert_eq!(a.renew().await.unwrap().acquired, [0, 1]);
        assert!(
            a.renew().await.unwrap().acquired.is_empty(),
            "renewed, not taken"
        );
        // A stalls past its lease (another node could have held the partitions meanwhile): the
        // partitions are taken anew, so their fences move again.
        tokio::time::sleep(ttl + Duration::from_millis(200)).await;
        let mut again = a.renew().await.unwrap().acquired;
        again.sort_unstable();
        assert_eq!(again, [0, 1]);
    }
}
