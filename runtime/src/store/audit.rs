//! The append-only audit trail, its per-tenant hash chain and the keyed seal over it.
//!
//! The database assigns `seq`, `prev_hash`, `hash` and `created_at` in a trigger, so a caller can
//! only describe *what* happened; it cannot place or date the row. The chain alone proves little
//! against someone who can write to the database as its owner: they can edit a row and recompute
//! every later hash with the same SQL function, and `audit_verify_chain` passes again. So every
//! [`TenantTx`] that appended rows also writes, as its last statement before commit, one seal
//! into `audit_seals`: an HMAC-SHA256 (`crypto::AuditKeys`, `KONSTRUCT_AUDIT_KEYS`) of the
//! tenant id, the first and last seq it appended and the hash of its last row. The database never
//! holds that key. A seal covers exactly the run of rows its transaction wrote, so the seals of a
//! sound trail tile it from seq 1 with no gap: [`verify`] walks the chain (the SQL function),
//! checks every seal in Rust, and requires the runs to follow each other to the newest row. A
//! forger who rewrites a row must delete every later seal (each covers a hash that changed); the
//! next honest seal covers only its own run, so the rewritten rows stay a gap nobody sealed.
//! Dropping the newest rows together with their seals leaves a shorter chain that still
//! verifies; that is caught by comparing with a head ([`head`]) exported earlier and kept outside
//! Konstruct.
//!
//! **No end-user content in audit rows.** An audit row is kept forever and cannot be edited or
//! deleted, so it must never need to be: `target_id` and `details` hold ids, counts, classes and
//! reasons of our own (an event id, a rule's reason, a token count, an error class), never a
//! message's text, a tool's arguments, a provider's error text (which may quote the prompt) or
//! personal data such as names, e-mail addresses or phone numbers. Then forgetting a customer
//! means deleting their conversations and messages, and the trail stays whole and verifiable.
//! `audit_content` in the integration tests drives real traffic with a canary text and fails if
//! it reaches any audit column.
//!
//! Reading the trail — the filtered list and the export's batches — is in `list`.

use futures_util::TryStreamExt;
use serde_json::Value;
use shared::audit::{AuditActorKind, AuditVerdict};
use shared::{AgentId, ConnectionId, ConversationId, EndUserId, TenantId};
use uuid::Uuid;

use super::{Store, StoreResult, TenantTx};
use crate::crypto::{AuditKeys, SealedRun};

mod list;
pub use list::{ActorFilter, EventFilter, EventRow, list, newest_seq, nth_seq};

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// Everything that can be audited: the one table of audit actions. The name is what is
        /// stored (lower-case, dotted, as the database's check requires).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(#[$doc])* $variant,)+
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)+
                }
            }
        }
    };
}

actions! {
    /// A platform admin created a tenant.
    TenantCreated => "tenant.created",
    /// Its name, slug or status changed.
    TenantUpdated => "tenant.updated",
    /// The last event of a deleted tenant's trail.
    TenantDeleted => "tenant.deleted",
    TenantLimitsChanged => "tenant.limits_changed",
    /// Its time zone or locale changed.
    TenantSettingsChanged => "tenant.settings_changed",
    AgentCreated => "agent.created",
    AgentUpdated => "agent.updated",
    AgentDeleted => "agent.deleted",
    MemberAdded => "member.added",
    MemberRoleChanged => "member.role_changed",
    MemberRemoved => "member.removed",
    ChannelConnected => "channel.connected",
    ChannelRefreshed => "channel.refreshed",
    ChannelDisconnected => "channel.disconnected",
    /// The provider refused the connection's credentials for good (a revoked token).
    ChannelFailed => "channel.failed",
    LlmKeySet => "llm_key.set",
    LlmKeyDeleted => "llm_key.deleted",
    /// The provider began refusing a tenant's own key (once per refusal episode).
    LlmKeyRefused => "llm.key_refused",
    /// One LLM call: provider, model, tokens, cost.
    LlmCall => "llm.call",
    /// Every deployment failed for a turn (the failure class only).
    LlmFailed => "llm.failed",
    ImpersonationStarted => "impersonation.started",
    ImpersonationStopped => "impersonation.stopped",
    /// A request made while impersonating, recorded before it is handled.
    ImpersonationRequest => "impersonation.request",
    ConversationHandedOff => "conversation.handed_off",
    /// A member took a conversation (from the queue or from the AI).
    ConversationClaimed => "conversation.claimed",
    /// A conversation was given to a member, or back to the queue.
    ConversationAssigned => "conversation.assigned",
    /// A person replied to the customer (the message's id; never its text).
    ConversationReplied => "conversation.replied",
    /// A private note was written (its id; never its text).
    ConversationNoteAdded => "conversation.note_added",
    /// The inbox status changed (open, pending, snoozed, resolved).
    ConversationStatusChanged => "conversation.status_changed",
    /// A person gave the conversation back to the AI.
    ConversationHandedBack => "conversation.handed_back",
    /// A colleague answered in the channel's own thread and so took the conversation.
    ConversationTakenInChannel => "conversation.taken_in_channel",
    /// An AI reply was recorded but not sent because a person has the conversation.
    ReplyWithheld => "reply.withheld",
    /// The tenant's people were told of a hand-off (how many by mail, whether in Slack).
    HandoffNotified => "handoff.notified",
    ReplyNoticeSent => "reply.notice_sent",
    ReplyApologySent => "reply.apology_sent",
    ReplyHandoffSent => "reply.handoff_sent",
    /// A reply part could never be sent (outside WhatsApp's window with no template).
    ReplyUndeliverable => "reply.undeliverable",
    /// The provider accepted a reply part and later reported it undeliverable (its error code).
    ReplyFailed => "reply.failed",
    /// A request outside the agent's business function was declined without the LLM.
    ScopeDeclined => "scope.declined",
    /// Messages refused by a rate limit in one window, as one record with the count.
    MessageRateLimited => "message.rate_limited",
    MessageDeadLettered => "message.dead_lettered",
    /// A failed background job was queued again by hand.
    JobRetried => "job.retried",
    /// A document was uploaded or imported into the knowledge base (its id and type only).
    DocumentAdded => "knowledge.document_added",
    /// A document's title or agents changed.
    DocumentUpdated => "knowledge.document_updated",
    DocumentRetried => "knowledge.document_retried",
    DocumentDeleted => "knowledge.document_deleted",
    /// A rebuild of the tenant's index with another embedding model was started.
    IndexRebuildStarted => "knowledge.index_rebuild_started",
    /// One memory of an end user was deleted by hand (never its text).
    MemoryDeleted => "memory.deleted",
    /// An end user was erased: messages, memories, vectors and cached state (counts only).
    EndUserErased => "end_user.erased",
    /// A tenant's HTTP tool was created, changed or deleted (its name, method and host; never
    /// a header value).
    ToolCreated => "tool.created",
    ToolUpdated => "tool.updated",
    ToolDeleted => "tool.deleted",
    /// An operator ran a tool with sample arguments (the outcome only).
    ToolTested => "tool.tested",
    /// An agent called a tool: which, how it ended, how long it took (never its arguments or
    /// result: those stay with the conversation).
    ToolCalled => "tool.called",
    /// A turn's tool loop stopped at its step limit or deadline.
    ToolLoopStopped => "tool.loop_stopped",
    /// Someone was invited with a role (the invitation's id and the role: the address stays with
    /// the invitation).
    InvitationCreated => "invitation.created",
    /// An invitation's mail was sent again with a new link (the old one stops working).
    InvitationResent => "invitation.resent",
    InvitationRevoked => "invitation.revoked",
    /// The invitee joined with the invited role.
    InvitationAccepted => "invitation.accepted",
    /// An invitation's mail could not be sent for good (our reason, never the server's text).
    InvitationMailFailed => "invitation.mail_failed",
    /// A platform admin read the tenant's usage figures in the cross-tenant report (the range).
    UsageReadByPlatform => "usage.read_by_platform",
    /// A budget was set or changed (its scope, amount, thresholds and policy).
    BudgetSet => "budget.set",
    BudgetRemoved => "budget.removed",
    /// A budget's month crossed one of its thresholds (the budget, the threshold, the spend).
    BudgetThresholdCrossed => "budget.threshold_crossed",
    /// A crossed threshold's alert went out (how many admins were mailed, the webhook's status).
    BudgetAlertSent => "budget.alert_sent",
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about, by id: never a name, a text or anything an end user wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    None,
    Tenant(TenantId),
    Agent(AgentId),
    User(Uuid),
    Connection(ConnectionId),
    Conversation(ConversationId),
    EndUser(EndUserId),
    /// A background job.
    Job(Uuid),
    /// A document of the knowledge base.
    Document(Uuid),
    /// A memory of an end user.
    Memory(Uuid),
    /// A tenant's HTTP tool.
    Tool(Uuid),
    /// An invitation into the tenant.
    Invitation(Uuid),
    /// A tenant's own LLM key, by provider.
    LlmKey(&'static str),
    /// An HTTP request (method and route pattern), for requests made while impersonating.
    Request(String),
}

impl Target {
    fn columns(&self) -> (Option<&'static str>, Option<String>) {
        match self {
            Target::None => (None, None),
            Target::Tenant(id) => (Some("tenant"), Some(id.to_string())),
            Target::Agent(id) => (Some("agent"), Some(id.to_string())),
            Target::User(id) => (Some("user"), Some(id.to_string())),
            Target::Connection(id) => (Some("channel_connection"), Some(id.to_string())),
            Target::Conversation(id) => (Some("conversation"), Some(id.to_string())),
            Target::EndUser(id) => (Some("end_user"), Some(id.to_string())),
            Target::Job(id) => (Some("job"), Some(id.to_string())),
            Target::Document(id) => (Some("knowledge_document"), Some(id.to_string())),
            Target::Memory(id) => (Some("memory"), Some(id.to_string())),
            Target::Tool(id) => (Some("tool"), Some(id.to_string())),
            Target::Invitation(id) => (Some("invitation"), Some(id.to_string())),
            Target::LlmKey(provider) => (Some("llm_key"), Some((*provider).to_string())),
            Target::Request(what) => (Some("http"), Some(what.clone())),
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The runtime itself (a pipeline step, a scheduled job).
    System,
    /// A signed-in operator.
    User(Uuid),
    /// A platform admin acting inside the tenant; `admin` is the real person.
    PlatformAdmin { admin: Uuid },
    /// A platform admin acting through an impersonation of the tenant: `impersonator_id` holds
    /// the real admin's id, which marks the row as done under impersonation.
    Impersonating { admin: Uuid },
    /// A Slack or WhatsApp end user.
    EndUser(EndUserId),
}

impl Actor {
    fn columns(self) -> (&'static str, Option<Uuid>, Option<Uuid>) {
        let (kind, id, impersonator) = match self {
            Actor::System => (AuditActorKind::System, None, None),
            Actor::User(id) => (AuditActorKind::User, Some(id), None),
            Actor::PlatformAdmin { admin } => (AuditActorKind::PlatformAdmin, Some(admin), None),
            Actor::Impersonating { admin } => {
                (AuditActorKind::PlatformAdmin, Some(admin), Some(admin))
            }
            Actor::EndUser(id) => (AuditActorKind::EndUser, Some(*id.as_uuid()), None),
        };
        (kind.as_str(), id, impersonator)
    }
}

/// One thing that happened, to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub actor: Actor,
    pub action: Action,
    pub target: Target,
    /// A JSON object with a secret-free summary of ids, counts and reasons (e.g. before/after of
    /// changed settings) — never message text, tool arguments or personal data (see the module
    /// documentation).
    pub details: Value,
    pub request_id: Option<String>,
}

impl NewEvent {
    /// An event about one target, with no request behind it (the engine's events).
    pub fn about(actor: Actor, action: Action, target: Target, details: Value) -> Self {
        Self {
            actor,
            action,
            target,
            details,
            request_id: None,
        }
    }
}

/// Where an appended event landed in its tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// The rows a transaction appended and will seal at commit: from `first_seq` to `last`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unsealed {
    first_seq: i64,
    last: Appended,
}

/// The outcome of walking a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub ok: bool,
    pub rows_checked: i64,
    /// The first row that failed, when `ok` is false.
    pub first_bad_seq: Option<i64>,
    /// Why it failed, in words.
    pub problem: Option<String>,
    /// The hash of the last good row (all zeros for an empty chain).
    pub head_hash: Vec<u8>,
}

/// Appends an event to the tenant's chain inside `tx`. `seq`, `prev_hash`, `hash` and
/// `created_at` are filled in by the database's trigger (NOT NULL is checked after it runs).
pub async fn append(tx: &mut TenantTx, event: &NewEvent) -> StoreResult<Appended> {
    let tenant = tx.tenant();
    let (actor_kind, actor_id, impersonator_id) = event.actor.columns();
    let (target_kind, target_id) = event.target.columns();
    let (seq, hash): (i64, Vec<u8>) = sqlx::query_as(
        "INSERT INTO audit_events (tenant_id, actor_kind, actor_id, impersonator_id, action, \
                                   target_kind, target_id, details, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING seq, hash",
    )
    .bind(tenant)
    .bind(actor_kind)
    .bind(actor_id)
    .bind(impersonator_id)
    .bind(event.action.as_str())
    .bind(target_kind)
    .bind(target_id)
    .bind(&event.details)
    .bind(event.request_id.as_deref())
    .fetch_one(tx.connection())
    .await?;
    let appended = Appended { seq, hash };
    // Sealed by `TenantTx::commit`, as one run from the transaction's first row to its last (the
    // chain lock makes them consecutive).
    let first_seq = tx.unsealed.as_ref().map_or(seq, |run| run.first_seq);
    tx.unsealed = Some(Unsealed {
        first_seq,
        last: appended.clone(),
    });
    Ok(appended)
}

/// Writes the seal of `run`, the rows the transaction appended (called by `TenantTx::commit`).
/// Without audit keys it writes nothing: verification then reports the rows as unsealed.
pub(super) async fn seal(tx: &mut TenantTx, run: &Unsealed) -> StoreResult<()> {
    let tenant = tx.tenant();
    let sealed = SealedRun {
        first_seq: run.first_seq,
        seq: run.last.seq,
        row_hash: &run.last.hash,
    };
    let Some((version, seal)) = tx.audit_keys().seal(tenant, sealed) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO audit_seals (tenant_id, first_seq, seq, row_hash, key_version, seal) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tenant.as_uuid())
    .bind(run.first_seq)
    .bind(run.last.seq)
    .bind(&run.last.hash)
    .bind(i64::from(version))
    .bind(&seal)
    .execute(tx.connection())
    .await?;
    Ok(())
}

/// Walks the chain of the transaction's tenant with the SQL function alone. It does not look at
/// the seals, so a forger who recomputed the chain passes it: [`verify`] is the verification.
pub async fn verify_chain(tx: &mut TenantTx) -> StoreResult<ChainReport> {
    let tenant = tx.tenant();
    let (ok, rows_checked, first_bad_seq, problem, head_hash): (
        bool,
        i64,
        Option<i64>,
        Option<String>,
        Vec<u8>,
    ) = sqlx::query_as(
        "SELECT ok, rows_checked, first_bad_seq, problem, head_hash FROM audit_verify_chain($1)",
    )
    .bind(tenant.as_uuid())
    .fetch_one(tx.connection())
    .await?;
    Ok(ChainReport {
        ok,
        rows_checked,
        first_bad_seq,
        problem,
        head_hash,
    })
}

/// One position in a tenant's chain: the row at `seq` and its hash (seq 0 and all zeros before the
/// first row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: Vec<u8>,
}

/// What an operator exports to keep outside Konstruct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadExport {
    /// The newest row.
    pub head: ChainHead,
    /// Rows 1 to here are covered by seals that check, one run after another (0 when none): a
    /// seal after a gap vouches for nothing before it.
    pub sealed_through: i64,
    /// The key version of that seal.
    pub key_version: Option<u32>,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// True only when the chain is intact, every seal checks, the newest row is sealed and (when
    /// given) the exported head is still in the chain unchanged.
    pub ok: bool,
    pub verdict: AuditVerdict,
    /// Rows whose chain links and hashes are intact, from seq 1.
    pub rows_checked: i64,
    /// Every row from seq 1 to this one is covered by seals that check, each run starting where
    /// the one before it ended; 0 when none.
    pub sealed_through: i64,
    /// Where the evidence first fails: the row the chain breaks at, the seal that does not check,
    /// or the first unsealed row.
    pub first_bad_seq: Option<i64>,
    /// What is wrong, in words.
    pub problem: Option<String>,
    /// The chain's newest row as stored now.
    pub head: ChainHead,
    /// The comparison with an exported head, when one was given.
    pub exported: Option<ExportedCheck>,
}

/// Whether a head exported earlier is still in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedCheck {
    pub head: ChainHead,
    /// The row at the exported seq exists and still has the exported hash.
    pub contained: bool,
    pub problem: Option<String>,
}

/// A seal with the row it seals as stored now (`None` when that row is gone).
#[derive(sqlx::FromRow)]
struct SealRow {
    first_seq: i64,
    seq: i64,
    row_hash: Vec<u8>,
    key_version: i64,
    seal: Vec<u8>,
    /// The hash the sealed row has now.
    current: Option<Vec<u8>>,
}

/// The tenant's seals, each with the hash its row has now, in the given order.
macro_rules! seals_query {
    ($order:literal) => {
        concat!(
            "SELECT s.first_seq, s.seq, s.row_hash, s.key_version, s.seal, e.hash AS current \
               FROM audit_seals s \
               LEFT JOIN audit_events e ON e.tenant_id = s.tenant_id AND e.seq = s.seq \
              WHERE s.tenant_id = $1 ORDER BY s.seq ",
            $order
        )
    };
}

fn genesis() -> Vec<u8> {
    vec![0; 32]
}

async fn current_head(tx: &mut TenantTx) -> StoreResult<ChainHead> {
    let tenant = tx.tenant();
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, hash FROM audit_events WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(tenant.as_uuid())
    .fetch_optional(tx.connection())
    .await?;
    Ok(row.map_or_else(
        || ChainHead {
            seq: 0,
            hash: genesis(),
        },
        |(seq, hash)| ChainHead { seq, hash },
    ))
}

/// What is wrong with one seal, if anything.
fn seal_problem(keys: &AuditKeys, tenant: TenantId, seal: &SealRow) -> Option<String> {
    let seq = seal.seq;
    match &seal.current {
        None => Some(format!(
            "the row at seq {seq} is sealed but missing: rows were removed"
        )),
        Some(hash) if *hash != seal.row_hash => Some(format!(
            "the row at seq {seq} no longer has the hash its seal covers: it or an earlier row \
             was rewritten after it was sealed"
        )),
        Some(_) => {
            let version = u32::try_from(seal.key_version).unwrap_or(u32::MAX);
            let run = SealedRun {
                first_seq: seal.first_seq,
                seq,
                row_hash: &seal.row_hash,
            };
            keys.check(tenant, run, version, &seal.seal)
                .err()
                .map(|e| format!("the seal at seq {seq} does not check: {e}"))
        }
    }
}

/// What the seals say, walked in chain order up to (not including) `chain_end`.
struct SealWalk {
    /// Rows 1 to here are covered by seals that check, one run after another.
    sealed_through: i64,
    /// The first run of rows no seal covers, before a later seal (the seals after it are still
    /// checked: a gap must not hide a rewrite behind it).
    gap: Option<(i64, i64)>,
    /// The newest row covered by a seal that checks, and that seal's key version.
    newest: Option<(i64, Option<u32>)>,
    /// The first seal that does not check, or overlaps an earlier one.
    failure: Option<(i64, String)>,
}

async fn walk_seals(
    tx: &mut TenantTx,
    keys: &AuditKeys,
    tenant: TenantId,
    chain_end: i64,
) -> StoreResult<SealWalk> {
    let mut walk = SealWalk {
        sealed_through: 0,
        gap: None,
        newest: None,
        failure: None,
    };
    if keys.is_empty() {
        return Ok(walk);
    }
    // The next row a seal should start at, and whether every row before it is sealed.
    let mut next = 1;
    let mut tiled = true;
    let mut seals = sqlx::query_as::<_, SealRow>(seals_query!("ASC"))
        .bind(tenant.as_uuid())
        .fetch(tx.connection());
    while let Some(seal) = seals.try_next().await? {
        if seal.seq >= chain_end {
            break;
        }
        if seal.first_seq < next {
            walk.failure = Some((
                seal.seq,
                format!(
                    "the seal at seq {} claims rows from seq {} that an earlier seal covers: \
                     seals were forged or replayed",
                    seal.seq, seal.first_seq
                ),
            ));
            break;
        }
        if seal.first_seq > next {
            walk.gap.get_or_insert((next, seal.first_seq - 1));
            tiled = false;
        }
        if let Some(problem) = seal_problem(keys, tenant, &seal) {
            walk.failure = Some((seal.seq, problem));
            break;
        }
        next = seal.seq + 1;
        if tiled {
            walk.sealed_through = seal.seq;
        }
        walk.newest = Some((seal.seq, u32::try_from(seal.key_version).ok()));
    }
    Ok(walk)
}

/// The tenant's current head, for the operator to keep outside Konstruct.
pub async fn head(store: &Store, tenant: TenantId) -> StoreResult<HeadExport> {
    let mut tx = store.tenant_snapshot(tenant).await?;
    let head = current_head(&mut tx).await?;
    let keys = tx.audit_keys().clone();
    let walk = walk_seals(&mut tx, &keys, tenant, i64::MAX).await?;
    // Only an unbroken run of seals from the first row vouches for rows; the key version is the
    // newest seal's, when every seal checks.
    let sealed_through = walk.sealed_through;
    let key_version = walk
        .failure
        .is_none()
        .then_some(walk.newest)
        .flatten()
        .and_then(|(_, version)| version);
    tx.rollback().await?;
    Ok(HeadExport {
        head,
        sealed_through,
        key_version,
    })
}

/// Verifies the tenant's trail: the chain (`audit_verify_chain`), every seal (in Rust, with the
/// store's keys), that the newest row is sealed, and, when `exported` is given, that the chain
/// still holds that head unchanged. All reads see one snapshot, so appends running meanwhile
/// cannot make a sound trail look broken.
pub async fn verify(
    store: &Store,
    tenant: TenantId,
    exported: Option<&ChainHead>,
) -> StoreResult<Verification> {
    let mut tx = store.tenant_snapshot(tenant).await?;
    let chain = verify_chain(&mut tx).await?;
    let head = current_head(&mut tx).await?;
    let keys = tx.audit_keys().clone();

    // Seals in chain order, each run starting where the one before ended; past a break in the
    // chain there is nothing left to vouch for.
    let walk = walk_seals(
        &mut tx,
        &keys,
        tenant,
        chain.first_bad_seq.unwrap_or(i64::MAX),
    )
    .await?;
    let (sealed_through, seal_failure, gap) = (walk.sealed_through, walk.failure, walk.gap);

    let (mut verdict, mut first_bad_seq, mut problem) = if let Some((seq, problem)) = seal_failure {
        (AuditVerdict::Broken, Some(seq), Some(problem))
    } else if !chain.ok {
        (
            AuditVerdict::Broken,
            chain.first_bad_seq,
            chain.problem.clone(),
        )
    } else if keys.is_empty() && head.seq > 0 {
        (
            AuditVerdict::Unsealed,
            Some(1),
            Some(format!(
                "no audit key is configured (KONSTRUCT_AUDIT_KEYS), so no seal can be checked: \
                 rows 1 to {} are unsealed",
                head.seq
            )),
        )
    } else if let Some((from, to)) = gap {
        (
            AuditVerdict::Unsealed,
            Some(from),
            Some(format!(
                "rows {from} to {to} have no seal although later rows do: their seals were \
                 deleted (a rewrite hidden this way is not vouched for by the seals after it), \
                 or they were written while no audit key was configured"
            )),
        )
    } else if sealed_through < head.seq {
        (
            AuditVerdict::Unsealed,
            Some(sealed_through + 1),
            Some(format!(
                "rows {} to {} are not sealed: they were written without an audit key, or their \
                 seals were deleted",
                sealed_through + 1,
                head.seq
            )),
        )
    } else {
        (AuditVerdict::Intact, None, None)
    };

    let exported = match exported {
        None => None,
        Some(expected) => {
            let stored: Option<Vec<u8>> = if expected.seq == 0 {
                Some(genesis())
            } else {
                sqlx::query_scalar(
                    "SELECT hash FROM audit_events WHERE tenant_id = $1 AND seq = $2",
                )
                .bind(tenant.as_uuid())
                .bind(expected.seq)
                .fetch_optional(tx.connection())
                .await?
            };
            let (seq, now) = (expected.seq, head.seq);
            let (contained, why, bad_at, missing) = match stored {
                Some(hash) if hash == expected.hash => (true, None, None, AuditVerdict::Intact),
                Some(_) => (
                    false,
                    Some(format!(
                        "the row at seq {seq} no longer has the exported hash: the chain was \
                         rewritten after the head was exported"
                    )),
                    Some(seq),
                    AuditVerdict::Broken,
                ),
                None if seq > now => (
                    false,
                    Some(format!(
                        "the chain now ends at seq {now}, before the exported head at seq {seq}: \
                         its newest rows were removed"
                    )),
                    Some(now + 1),
                    AuditVerdict::Truncated,
                ),
                None => (
                    false,
                    Some(format!(
                        "the row at seq {seq} of the exported head is missing: rows were removed"
                    )),
                    Some(seq),
                    AuditVerdict::Broken,
                ),
            };
            if problem.is_none() && !contained {
                verdict = missing;
                first_bad_seq = bad_at;
                problem = why.clone();
            }
            Some(ExportedCheck {
                head: expected.clone(),
                contained,
                problem: why,
            })
        }
    };
    tx.rollback().await?;
    Ok(Verification {
        ok: problem.is_none(),
        verdict,
        rows_checked: chain.rows_checked,
        sealed_through,
        first_bad_seq,
        problem,
        head,
        exported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_name_is_unique_and_passes_the_databases_check() {
        let mut seen = std::collections::HashSet::new();
        for action in Action::ALL {
            let name = action.as_str();
            assert!(seen.insert(name), "{name} twice");
            // The check on audit_events.action: ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$
            let parts: Vec<&str> = name.split('.').collect();
            assert!(parts.len() >= 2, "{name}");
            for part in parts {
                let mut chars = part.chars();
                assert!(
                    chars.next().is_some_and(|c| c.is_ascii_lowercase()),
                    "{name}"
                );
                assert!(
                    chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{name}"
                );
            }
        }
    }
}
