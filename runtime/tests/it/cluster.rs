//! Several nodes sharing the load: three real `konstruct serve` processes against one Postgres
//! and one Redis key space, a steady load of signed Slack mentions spread over them (as a load
//! balancer would, moving on to the next node when one does not answer, as Slack retries), and
//! nodes leaving and joining meanwhile. A sampler reads every partition's lease as it goes.
//!
//! What must hold: every message accepted is answered; a partition's lease names one of the
//! nodes running (a killed node's names lapse within a lease), no partition stays without an
//! owner for longer than a lease, and the live nodes end up sharing the partitions fairly. A
//! second answer can only come from a partition the SIGKILLed node held (the post→mark window);
//! the tests count and print them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use runtime::engine::ingest::Ingest;
use runtime::redis::Redis;
use shared::TenantId;
use tokio::sync::watch;
use uuid::Uuid;

use crate::fixtures::seed_tenant;
use crate::nodes::{Launch, Node, Scene, deliver, install, queue};
use crate::support::TestApp;
use crate::world;

/// What `KONSTRUCT_PARTITION_LEASE_SECS` the nodes run with (see `nodes`).
const LEASE: Duration = Duration::from_secs(3);
/// Messages a second, over all nodes.
const RATE: u32 = 25;

/// Every partition's lease holder ("" for none), sampled.
struct Sample {
    /// When the read was sent.
    at: Instant,
    holders: Vec<String>,
}

/// A tenant per ingest partition, each with its agent answering its own Slack workspace.
struct Fleet {
    app: TestApp,
    prefix: String,
    ingest: Ingest,
    redis: Redis,
    scenes: Vec<(TenantId, Scene)>,
}

impl Fleet {
    async fn new(first: &Node, app: TestApp, prefix: String) -> Self {
        let (ingest, redis) = queue(&prefix).await;
        let platform = world::user(&app, &format!("p-{}@example.com", Uuid::new_v4()), true).await;
        let token = app.token_for(platform, None).await;
        let mut by_partition = BTreeMap::new();
        while by_partition.len() < ingest.partitions() as usize {
            let tenant = seed_tenant(&app.store, "cluster").await.tenant;
            by_partition
                .entry(ingest.partition_of(tenant))
                .or_insert(tenant);
        }
        let mut scenes = Vec::new();
        for tenant in by_partition.into_values() {
            let agent = world::agent(&app, tenant, "Nia").await;
            scenes.push((tenant, install(&app, first, tenant, &token, agent).await));
        }
        Self {
            app,
            prefix,
            ingest,
            redis,
            scenes,
        }
    }

    async fn holders(&self) -> Vec<String> {
        let keys = (0..self.ingest.partitions())
            .map(|p| self.redis.key(&format!("engine:lease:{p}")))
            .collect();
        self.redis
            .eval(
                "local r = {} for i, k in ipairs(KEYS) do r[i] = redis.call('GET', k) or '' end \
                 return r",
                keys,
                vec![],
            )
            .await
            .unwrap()
    }
}

/// The load, the sampler and what they saw.
struct Run {
    fleet: Rc<Fleet>,
    /// Base URLs the load balancer sends to.
    routed: Arc<Mutex<Vec<String>>>,
    /// Text of every message a node accepted (200), with its tenant's partition.
    accepted: Arc<Mutex<HashMap<String, u32>>>,
    /// Deliveries a node did not take (refused, reset, not 200), each retried elsewhere.
    retried: Arc<Mutex<u64>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<actix_rt::task::JoinHandle<()>>,
}

impl Run {
    /// Starts the load over `channels` Slack channels a workspace.
    fn start(fleet: Rc<Fleet>, nodes: &[&Node], channels: usize) -> Self {
        let routed = Arc::new(Mutex::new(
            nodes.iter().map(|n| n.base.clone()).collect::<Vec<_>>(),
        ));
        let accepted = Arc::new(Mutex::new(HashMap::new()));
        let retried = Arc::new(Mutex::new(0));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let load = {
            let (fleet, routed, accepted, retried) = (
                fleet.clone(),
                routed.clone(),
                accepted.clone(),
                retried.clone(),
            );
            let stopped = stopped.clone();
            actix_rt::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
                let mut i = 0_usize;
                while !*stopped.borrow() {
                    tick.tick().await;
                    let (tenant, scene) = &fleet.scenes[i % fleet.scenes.len()];
                    let text = format!("m{i}");
                    let ts = format!("1700000000.{i:06}");
                    let channel = format!("C{}", (i / fleet.scenes.len()) % channels);
                    // Round robin; a node that does not take it passes it to the next one.
                    let bases = routed.lock().unwrap().clone();
                    for k in 0..bases.len().max(1) * 2 {
                        let Some(base) = bases.get((i + k) % bases.len().max(1)) else {
                            break;
                        };
                        match deliver(
                            &http,
                            base,
                            scene,
                            &channel,
                            &format!("EvLoad{i}"),
                            &text,
                            &ts,
                        )
                        .await
                        {
                            Ok(status) if status.is_success() => {
                                accepted
                                    .lock()
                                    .unwrap()
                                    .insert(text.clone(), fleet.ingest.partition_of(*tenant));
                                break;
                            }
                            _ => *retried.lock().unwrap() += 1,
                        }
                    }
                    i += 1;
                }
            })
        };
        let sampler = {
            let (fleet, samples) = (fleet.clone(), samples.clone());
            actix_rt::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                while !*stopped.borrow() {
                    tick.tick().await;
                    // Stamped before the read: what it shows was true at some moment after.
                    let at = Instant::now();
                    let holders = fleet.holders().await;
                    samples.lock().unwrap().push(Sample { at, holders });
                }
            })
        };
        Self {
            fleet,
            routed,
            accepted,
            retried,
            samples,
            stop,
            tasks: vec![load, sampler],
        }
    }

    /// Lets the load run for `d` (the load and the sampler are tasks of their own).
    async fn run_for(d: Duration) {
        tokio::time::sleep(d).await;
    }

    fn route(&self, base: &str) {
        self.routed.lock().unwrap().push(base.to_string());
    }

    fn unroute(&self, base: &str) {
        self.routed.lock().unwrap().retain(|b| b != base);
    }

    /// Stops the load and the sampler; waits until every accepted message is answered and
    /// nothing is left pending. Returns the texts answered more than once.
    async fn finish(mut self) -> Finished {
        self.stop.send(true).unwrap();
        for task in self.tasks.drain(..) {
            task.await.unwrap();
        }
        let accepted = self.accepted.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(90);
        let posts = loop {
            let mut posts: HashMap<String, usize> = HashMap::new();
            for post in self.fleet.app.slack.posted() {
                if let Some(text) = post.text.strip_prefix("echo: ") {
                    *posts.entry(text.to_string()).or_default() += 1;
                }
            }
            let unanswered = accepted.keys().filter(|t| !posts.contains_key(*t)).count();
            if unanswered == 0 && self.pending().await == 0 {
                break posts;
            }
            assert!(
                Instant::now() < deadline,
                "{unanswered} of {} accepted messages never answered",
                accepted.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let unknown: Vec<_> = posts
            .keys()
            .filter(|t| !accepted.contains_key(*t))
            .collect();
        assert!(
            unknown.is_empty(),
            "answers to messages nobody accepted: {unknown:?}"
        );
        let doubled = posts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(text, n)| (text.clone(), *n, accepted[text]))
            .collect();
        let samples = std::mem::take(&mut *self.samples.lock().unwrap());
        Finished {
            accepted: accepted.len(),
            retried: *self.retried.lock().unwrap(),
            doubled,
            samples,
        }
    }

    async fn pending(&self) -> i64 {
        let mut total = 0;
        for p in 0..self.fleet.ingest.partitions() {
            let pending: i64 = self
                .fleet
                .redis
                .eval(
                    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
                     return redis.call('XPENDING', KEYS[1], 'engine')[1]",
                    vec![self.fleet.ingest.stream(p)],
                    vec![],
                )
                .await
                .unwrap();
            total += pending;
        }
        total
    }
}

struct Finished {
    accepted: usize,
    retried: u64,
    /// (text, posts, partition) of each message answered more than once.
    doubled: Vec<(String, usize, u32)>,
    samples: Vec<Sample>,
}

impl Finished {
    /// No partition was without an owner for longer than a lease (from the first sample on
    /// which every partition had one).
    fn assert_never_unowned_longer_than_a_lease(&self) {
        let first_full = self
            .samples
            .iter()
            .position(|s| s.holders.iter().all(|h| !h.is_empty()))
            .expect("every partition was owned at some point");
        let samples = &self.samples[first_full..];
        for p in 0..samples[0].holders.len() {
            let mut free_since: Option<Instant> = None;
            let mut longest = Duration::ZERO;
            for s in samples {
                match (s.holders[p].is_empty(), free_since) {
                    (true, None) => free_since = Some(s.at),
                    (false, Some(since)) => {
                        longest = longest.max(s.at - since);
                        free_since = None;
                    }
                    _ => {}
                }
            }
            if let Some(since) = free_since {
                longest = longest.max(samples.last().unwrap().at - since);
            }
            assert!(
                longest < LEASE,
                "partition {p} had no owner for {longest:?}"
            );
        }
    }

    /// Every lease names a node that is running, or one killed less than a lease ago; `gone`
    /// holds when each stopped or killed node stopped running.
    fn assert_only_running_nodes_hold(&self, gone: &HashMap<String, (Instant, bool)>) {
        for s in &self.samples {
            for (p, holder) in s.holders.iter().enumerate() {
                if let Some((when, killed)) = gone.get(holder) {
                    let grace = if *killed {
                        LEASE + Duration::from_millis(200)
                    } else {
                        Duration::ZERO
                    };
                    assert!(
                        s.at <= *when + grace,
                        "partition {p} still held by {holder} {:?} after it {}",
                        s.at - *when,
                        if *killed { "was killed" } else { "stopped" }
                    );
                }
            }
        }
    }

    fn report(&self, run: &str) {
        #[expect(clippy::print_stdout, reason = "the test reports what it measured")]
        {
            println!(
                "{run}: {} messages accepted, {} deliveries retried on another node, {} answered \
                 more than once ({:.3} %)",
                self.accepted,
                self.retried,
                self.doubled.len(),
                100.0 * self.doubled.len() as f64 / self.accepted.max(1) as f64
            );
        }
    }
}

/// Starts a node on a blocking thread, so the load and the sampler keep running meanwhile.
async fn start_node(launch: &Launch, prefix: &str) -> Node {
    let (launch, prefix) = (launch.clone(), prefix.to_string());
    tokio::task::spawn_blocking(move || launch.start(&prefix, None, &[]))
        .await
        .unwrap()
}

/// Waits until the live nodes together hold every partition, none more than its fair share.
async fn wait_balanced(fleet: &Fleet, live: &[&Node]) {
    let names: HashSet<&str> = live.iter().map(|n| n.name.as_str()).collect();
    let fair = fleet.ingest.partitions().div_ceil(live.len() as u32) as usize;
    let deadline = Instant::now() + LEASE * 4;
    loop {
        let holders = fleet.holders().await;
        let mut per_node: HashMap<&str, usize> = HashMap::new();
        for h in &holders {
            *per_node.entry(h.as_str()).or_default() += 1;
        }
        let balanced = holders.iter().all(|h| names.contains(h.as_str()))
            && per_node.values().all(|n| *n <= fair);
        if balanced {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the partitions never settled on the live nodes: {holders:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn three_nodes() -> (Rc<Fleet>, Launch, Vec<Node>) {
    let app = TestApp::spawn().await;
    let prefix = format!("konstruct-test:{}", Uuid::new_v4().simple());
    let launch = Launch::of(&app);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start_node(&launch, &prefix).await);
    }
    let fleet = Rc::new(Fleet::new(&nodes[0], app, prefix).await);
    wait_balanced(&fleet, &nodes.iter().collect::<Vec<_>>()).await;
    (fleet, launch, nodes)
}

#[actix_rt::test]
async fn three_nodes_share_the_load_while_one_stops_one_is_killed_and_one_joins() {
    let (fleet, launch, mut nodes) = three_nodes().await;
    // Eight channels a workspace: Slack takes about one message a second in each (and the sink
    // paces to that), which this load stays under, so every message can be answered soon.
    let run = Run::start(fleet.clone(), &nodes.iter().collect::<Vec<_>>(), 8);
    let mut gone = HashMap::new();
    Run::run_for(Duration::from_secs(3)).await;

    // A clean stop: the load balancer stops sending to it first, as an orchestrator drains it.
    let stopping = nodes.remove(0);
    run.unroute(&stopping.base);
    let name = stopping.name.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    gone.insert(name, (Instant::now(), false));
    Run::run_for(Duration::from_secs(3)).await;

    // SIGKILL, with the load balancer still sending to it (its deliveries fail and move on).
    let killed = nodes.remove(0);
    let killed_held: HashSet<u32> = fleet
        .holders()
        .await
        .iter()
        .enumerate()
        .filter(|(_, h)| **h == killed.name)
        .map(|(p, _)| p as u32)
        .collect();
    gone.insert(killed.name.clone(), (Instant::now(), true));
    let killed_base = killed.base.clone();
    killed.kill();
    Run::run_for(Duration::from_secs(2)).await;
    run.unroute(&killed_base);

    let joined = start_node(&launch, &fleet.prefix).await;
    run.route(&joined.base);
    nodes.push(joined);
    Run::run_for(Duration::from_secs(4)).await;

    let finished = run.finish().await;
    wait_balanced(&fleet, &nodes.iter().collect::<Vec<_>>()).await;
    finished.report("stop, SIGKILL, join");
    finished.assert_never_unowned_longer_than_a_lease();
    finished.assert_only_running_nodes_hold(&gone);
    for (text, posts, partition) in &finished.doubled {
        assert!(
            killed_held.contains(partition),
            "{text} was answered {posts} times on partition {partition}, which the killed \
             node did not hold"
        );
    }
    assert!(finished.accepted as u32 >= RATE * 5, "the load ran");
    assert!(finished.retried > 0, "the killed node refused deliveries");
    for node in nodes {
        node.kill();
    }
}

#[actix_rt::test]
async fn a_rolling_restart_of_all_three_nodes_answers_everything_once() {
    let (fleet, launch, mut nodes) = three_nodes().await;
    // Eight channels a workspace, under Slack's pace of one a second each (the sink paces to
    // it), so the backlog never outlasts the test.
    let run = Run::start(fleet.clone(), &nodes.iter().collect::<Vec<_>>(), 8);
    let mut gone = HashMap::new();
    Run::run_for(Duration::from_secs(2)).await;
    for _ in 0..3 {
        // Oldest first: drain, stop, start its replacement, route to it.
        let old = nodes.remove(0);
        run.unroute(&old.base);
        let name = old.name.clone();
        tokio::task::spawn_blocking(move || old.stop())
            .await
            .unwrap();
        gone.insert(name, (Instant::now(), false));
        let new = start_node(&launch, &fleet.prefix).await;
        run.route(&new.base);
        nodes.push(new);
        Run::run_for(Duration::from_secs(2)).await;
    }
    let finished = run.finish().await;
    wait_balanced(&fleet, &nodes.iter().collect::<Vec<_>>()).await;
    finished.report("rolling restart");
    finished.assert_never_unowned_longer_than_a_lease();
    finished.assert_only_running_nodes_hold(&gone);
    assert_eq!(
        finished.doubled,
        [],
        "clean stops leave nothing half-sent to answer again"
    );
    assert!(finished.accepted as u32 >= RATE * 4, "the load ran");
    for node in nodes {
        node.kill();
    }
}
