//! Budgets in the store, against real Postgres: reservations admit concurrent calls one at a
//! time (a month overshoots by at most one call), a crashed call's hold lapses, a new month
//! starts at zero by its key, and each threshold alerts once a month. Two tenants throughout.

use runtime::store::Store;
use runtime::store::budgets::{self, BudgetRow, NewBudget, Standing};
use shared::TenantId;
use uuid::Uuid;

use crate::support::TestApp;
use crate::world::World;

async fn set_budget(store: &Store, tenant: TenantId, monthly: i64, policy: &str) -> BudgetRow {
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let row = budgets::put(
        &mut tx,
        &NewBudget {
            agent: None,
            monthly_micro_usd: monthly,
            thresholds: &[50, 80, 100],
            policy,
            downgrade_group: None,
            count_own_keys: false,
            webhook_url: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    row
}

async fn reserve_at(
    store: &Store,
    tenant: TenantId,
    budget: &BudgetRow,
    period: &str,
    amount: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> (Uuid, Standing) {
    let id = Uuid::new_v4();
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let standing = budgets::reserve(
        &mut tx,
        id,
        budget,
        period,
        amount,
        now,
        now + chrono::Duration::seconds(60),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (id, standing)
}

async fn settle(
    store: &Store,
    tenant: TenantId,
    id: Uuid,
    budget: Uuid,
    period: &str,
    cost: i64,
) -> (i64, i64) {
    let mut tx = store.tenant_tx(tenant).await.unwrap();
    let spent = budgets::settle(&mut tx, Some(id), budget, period, cost)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    spent
}

#[tokio::test]
async fn two_hundred_concurrent_calls_against_room_for_fifty_make_at_most_fifty_one() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    const CALL: i64 = 1_000;
    let budget = set_budget(&app.store, w.a, 50 * CALL, "handoff").await;
    let other = set_budget(&app.store, w.b, 3 * CALL, "handoff").await;
    // A month the fixtures (which give each tenant a budget with spend in the current month)
    // never touched.
    let period = "2031-03";
    // Every call reserves its worst case, makes the call when admitted, and settles; a call
    // held back by calls in flight asks again once they may have settled (as turns do).
    let calls = (0..200).map(|_| {
        let store = app.store.clone();
        let budget = budget.clone();
        let tenant = w.a;
        tokio::spawn(async move {
            loop {
                let now = chrono::Utc::now();
                match reserve_at(&store, tenant, &budget, period, CALL, now).await {
                    (id, Standing::Reserved) => {
                        settle(&store, tenant, id, budget.id, period, CALL).await;
                        return true;
                    }
                    (_, Standing::HeldByCallsInFlight) => tokio::task::yield_now().await,
                    (_, Standing::Spent) => return false,
                }
            }
        })
    });
    let outcomes = futures_util::future::join_all(calls).await;
    let made = outcomes.iter().filter(|o| *o.as_ref().unwrap()).count() as i64;
    let refused = outcomes.iter().filter(|o| !*o.as_ref().unwrap()).count() as i64;
    assert_eq!(made + refused, 200, "every call is admitted or refused");
    assert!(made <= 51, "{made} calls made against room for 50");
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let (spent, held) = budgets::standing(&mut tx, budget.id, period, chrono::Utc::now())
        .await
        .unwrap();
    drop(tx);
    assert_eq!(spent, made * CALL, "every admitted call settled once");
    assert_eq!(held, 0, "no reservation left behind");
    // Nothing refused while there was room: the month is spent in full.
    assert!(spent >= 50 * CALL, "{spent}");
    assert!(spent <= 51 * CALL, "{spent}");

    // The other tenant's budget saw none of it.
    let mut tx = app.store.tenant_tx(w.b).await.unwrap();
    assert_eq!(
        budgets::standing(&mut tx, other.id, period, chrono::Utc::now())
            .await
            .unwrap(),
        (0, 0)
    );
    drop(tx);
    let (_, standing) = reserve_at(&app.store, w.b, &other, period, CALL, chrono::Utc::now()).await;
    assert_eq!(standing, Standing::Reserved);
    // And A cannot reach B's budget: under A's transaction B's row does not exist.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let crossed = budgets::reserve(
        &mut tx,
        Uuid::new_v4(),
        &other,
        period,
        CALL,
        chrono::Utc::now(),
        chrono::Utc::now(),
    )
    .await;
    assert!(
        crossed.is_err(),
        "a reservation against another tenant's budget fails"
    );
}

#[tokio::test]
async fn a_crashed_calls_hold_lapses_and_a_new_month_starts_at_zero() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let budget = set_budget(&app.store, w.a, 1_000, "handoff").await;
    let clock = runtime::time::Clock::default();
    let zone = runtime::time::TenantZone::parse("Pacific/Auckland").unwrap();
    // Far from the fixtures' month (each tenant's seeded budget has spend in the current one).
    clock.advance(chrono::Duration::days(400));
    let this_month = zone.month_key(clock.now());

    // A call reserved the whole month and its turn crashed: it never settles.
    let (_, first) = reserve_at(&app.store, w.a, &budget, &this_month, 1_000, clock.now()).await;
    assert_eq!(first, Standing::Reserved);
    let (_, held) = reserve_at(&app.store, w.a, &budget, &this_month, 10, clock.now()).await;
    assert_eq!(held, Standing::HeldByCallsInFlight);
    // Past its expiry the hold is gone, and the next call is admitted.
    clock.advance(chrono::Duration::seconds(61));
    let (id, again) = reserve_at(&app.store, w.a, &budget, &this_month, 1_000, clock.now()).await;
    assert_eq!(again, Standing::Reserved);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    assert_eq!(
        budgets::standing(&mut tx, budget.id, &this_month, clock.now())
            .await
            .unwrap(),
        (0, 1_000),
        "only the live reservation holds"
    );
    drop(tx);
    assert_eq!(
        settle(&app.store, w.a, id, budget.id, &this_month, 1_000).await,
        (0, 1_000)
    );
    let (_, spent) = reserve_at(&app.store, w.a, &budget, &this_month, 1, clock.now()).await;
    assert_eq!(spent, Standing::Spent);

    // A month later (by the tenant's calendar) the key is new, and so is the room.
    clock.advance(chrono::Duration::days(31));
    let next = zone.month_key(clock.now());
    assert_ne!(next, this_month);
    let (_, fresh) = reserve_at(&app.store, w.a, &budget, &next, 1_000, clock.now()).await;
    assert_eq!(fresh, Standing::Reserved);
    // The old month keeps what it spent.
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    assert_eq!(
        budgets::standing(&mut tx, budget.id, &this_month, clock.now())
            .await
            .unwrap()
            .0,
        1_000
    );
}

#[tokio::test]
async fn each_threshold_alerts_once_a_month_and_a_budget_is_set_replaced_and_removed() {
    let app = TestApp::spawn().await;
    let w = World::new(&app).await;
    let budget = set_budget(&app.store, w.a, 1_000, "soft").await;
    // Setting it again replaces it (one budget per scope).
    let replaced = set_budget(&app.store, w.a, 2_000, "soft").await;
    assert_eq!(replaced.id, budget.id);
    assert_eq!(replaced.monthly_micro_usd, 2_000);
    // A month the fixtures (which give each tenant a budget with spend in the current month)
    // never touched.
    let period = "2031-03";

    let mut alerts = Vec::new();
    for cost in [600, 500, 100, 900, 700] {
        let (id, standing) =
            reserve_at(&app.store, w.a, &replaced, period, cost, chrono::Utc::now()).await;
        if standing != Standing::Reserved {
            continue;
        }
        let (before, after) = settle(&app.store, w.a, id, replaced.id, period, cost).await;
        let mut tx = app.store.tenant_tx(w.a).await.unwrap();
        for threshold in budgets::crossed(
            &replaced.thresholds,
            replaced.monthly_micro_usd,
            before,
            after,
        ) {
            if budgets::record_alert(&mut tx, &replaced, period, threshold, after)
                .await
                .unwrap()
                .is_some()
            {
                alerts.push(threshold);
            }
            // Recording the same crossing again (a retried transaction) adds nothing.
            assert!(
                budgets::record_alert(&mut tx, &replaced, period, threshold, after)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        tx.commit().await.unwrap();
    }
    // 600 → 1100 (50 %) → 1200 → 2100 (80 %, 100 %); the last call found the month spent.
    assert_eq!(alerts, vec![50, 80, 100]);
    let mut tx = app.store.tenant_tx(w.a).await.unwrap();
    let stored: Vec<i16> = sqlx::query_scalar(
        "SELECT threshold FROM budget_alerts WHERE period = $1 ORDER BY threshold",
    )
    .bind(period)
    .fetch_all(tx.connection())
    .await
    .unwrap();
    assert_eq!(stored, vec![50, 80, 100]);
    assert!(budgets::delete(&mut tx, None).await.unwrap());
    assert!(budgets::list(&mut tx).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    // B's own budget (from the fixtures) is untouched by A's removal.
    let mut tx = app.store.tenant_tx(w.b).await.unwrap();
    assert_eq!(budgets::list(&mut tx).await.unwrap().len(), 1);
}
