//! The business-function scope check: declines clearly off-topic requests before the LLM.
//!
//! Meta's WhatsApp Business terms forbid general-purpose assistants; customer service for the
//! business is allowed. Each agent declares its `business_function` (and optionally examples
//! of in-scope requests). This check embeds the customer's message with the local model
//! ([`crate::embed`]) and compares it with two sides:
//!
//! - the business: the phrases of its function, its examples, and generic customer-service
//!   requests every business gets (orders, refunds, bookings, a person);
//! - built-in archetypes of general-assistant requests (poems, homework, trivia, code…),
//!   minus any archetype that resembles the business itself (a coding school's agent may
//!   be asked about code).
//!
//! It declines only when the message is closer to an archetype than to anything of the
//! business by a clear margin (tuned on `e2e/scope/tuning.jsonl`); a message with several
//! questions is judged by its most in-scope one. Anything less clear is `Unsure`, and the LLM's
//! prompt rule decides. Greetings, thanks and requests for a person are never declined. Wrongly
//! declining a customer costs more than letting a poem through to a prompt that refuses it, so
//! the margins are set for in-scope recall first.
//!
//! Cost: one embedding per message (one per question when it has several); the business side
//! is embedded once and cached, bounded in entries and in vectors.

pub mod eval;
mod prototypes;
mod text;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::embed::{EmbedError, LocalEmbedder, cosine};

pub use prototypes::Archetype;

/// What the check concluded about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Clearly the business's kind of request.
    InScope,
    /// Not clear either way: the LLM's prompt rule decides.
    Unsure,
    /// Clearly a general-assistant request: decline without calling the LLM.
    OffTopic,
}

/// What the verdict rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The agent declares no business function: nothing to judge against.
    NoBusinessFunction,
    /// The message is empty or only punctuation.
    EmptyMessage,
    /// A greeting, thanks or goodbye.
    SmallTalk,
    /// The customer asks for a person.
    AsksForPerson,
    /// The embedding comparison.
    Similarity,
    /// The model could not embed the text (logged); never a reason to decline.
    ModelFailed,
}

/// The verdict and the numbers behind it (for logs and for tuning).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// How much closer the message is to the nearest off-topic archetype than to the business
    /// side (cosine difference, about −1…1; positive leans off-topic). 0 when not compared.
    pub off_topic_score: f32,
    /// Cosine similarity with the nearest phrase or example of the business.
    pub business_similarity: f32,
    /// Cosine similarity with the nearest generic customer-service request.
    pub service_similarity: f32,
    /// Mean cosine similarity with the two nearest off-topic archetypes.
    pub off_topic_similarity: f32,
    /// The nearest off-topic archetype ("poem", "code", …).
    pub archetype: Option<Archetype>,
    /// Whether the message looked non-English (held to a stricter margin).
    pub non_english: bool,
    pub basis: Basis,
}

impl Judgement {
    fn not_compared(basis: Basis) -> Judgement {
        Judgement {
            verdict: Verdict::Unsure,
            off_topic_score: 0.0,
            business_similarity: 0.0,
            service_similarity: 0.0,
            off_topic_similarity: 0.0,
            archetype: None,
            non_english: false,
            basis,
        }
    }

    /// Whether the message should be declined without calling the LLM.
    pub fn declines(&self) -> bool {
        self.verdict == Verdict::OffTopic
    }
}

/// The margins of the decision. Tuned on `e2e/scope/tuning.jsonl` only (never on the
/// held-out file, which measures them).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Tuning {
    /// Decline an English message when its off-topic score is at least this.
    pub decline_margin: f32,
    /// The same for a message that looks non-English (the model is English-first).
    pub decline_margin_non_english: f32,
    /// And only when the nearest archetype is at least this similar.
    pub min_off_topic_similarity: f32,
    /// `InScope` (rather than `Unsure`) when the business side wins by at least this.
    pub in_scope_margin: f32,
    /// An archetype with a request at least this similar to a phrase or example of the
    /// business is part of that business and is not used against its customers.
    pub archetype_conflict: f32,
    /// Generic service requests count this much less than the business's own phrases.
    pub service_discount: f32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            // The largest score of an in-scope message of the tuning file, plus 0.10: that
            // file's in-scope tail moved by about that much as the reference lists grew, so
            // unseen customers' wording gets that much room.
            decline_margin: 0.13,
            decline_margin_non_english: 0.19,
            min_off_topic_similarity: 0.30,
            in_scope_margin: 0.10,
            archetype_conflict: 0.50,
            service_discount: 0.05,
        }
    }
}

/// How many nearest archetypes are averaged into the off-topic similarity.
const OFF_TOPIC_NEIGHBOURS: usize = 2;

/// The most businesses whose embeddings are kept (one entry per function-and-examples text).
pub const MAX_CACHED_BUSINESSES: usize = 1024;
/// The most vectors kept over all cached businesses (≈ 1.5 KiB each: ≤ 48 MiB).
pub const MAX_CACHED_VECTORS: usize = 32 * 1024;

/// The scope check. Clones share the model, the archetypes' embeddings and the cache.
#[derive(Clone)]
pub struct ScopeCheck {
    inner: Arc<Inner>,
}

struct Inner {
    embedder: LocalEmbedder,
    /// One vector per `prototypes::OFF_TOPIC` entry, in order.
    off_topic: Vec<Vec<f32>>,
    /// One vector per `prototypes::SERVICE` entry.
    service: Vec<Vec<f32>>,
    tuning: Tuning,
    /// The embedded business side per agent text, so a message costs one embedding.
    businesses: Mutex<BoundedCache<[u8; 32], Arc<Business>>>,
}

impl std::fmt::Debug for ScopeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeCheck")
            .field("model", &self.inner.embedder.model_id())
            .field("archetypes", &self.inner.off_topic.len())
            .field("tuning", &self.inner.tuning)
            .finish()
    }
}

/// One business's embedded side.
#[derive(Debug)]
struct Business {
    /// The phrases of the function and the examples.
    vectors: Vec<Vec<f32>>,
    /// Per off-topic archetype: whether it may be used against this business's customers.
    allowed: Vec<bool>,
}

impl ScopeCheck {
    /// The process-wide check, built (model loaded, archetypes embedded) on the first call.
    pub fn shared() -> Result<ScopeCheck, EmbedError> {
        static SHARED: OnceLock<Result<ScopeCheck, EmbedError>> = OnceLock::new();
        SHARED
            .get_or_init(|| ScopeCheck::new(LocalEmbedder::shared()?, Tuning::default()))
            .clone()
    }

    /// A check with its own margins and cache (for evaluating other margins).
    pub fn new(embedder: LocalEmbedder, tuning: Tuning) -> Result<ScopeCheck, EmbedError> {
        let texts: Vec<&str> = prototypes::OFF_TOPIC
            .iter()
            .map(|(_, text)| *text)
            .chain(prototypes::SERVICE.iter().copied())
            .collect();
        let mut vectors = embedder.embed(&texts)?;
        let service = vectors.split_off(prototypes::OFF_TOPIC.len());
        Ok(ScopeCheck {
            inner: Arc::new(Inner {
                embedder,
                off_topic: vectors,
                service,
                tuning,
                businesses: Mutex::new(BoundedCache::new(
                    MAX_CACHED_BUSINESSES,
                    MAX_CACHED_VECTORS,
                )),
            }),
        })
    }

    /// The embedding model the check judges with.
    pub fn model_id(&self) -> &'static str {
        self.inner.embedder.model_id()
    }

    /// The margins in force.
    pub fn tuning(&self) -> Tuning {
        self.inner.tuning
    }

    /// Judges one message against an agent's business function and examples. Blocking (one
    /// embedding, a few milliseconds in a release build); async code calls [`Self::judge_async`].
    /// Never fails: when the model cannot embed, the answer is `Unsure`.
    pub fn judge(&self, business_function: &str, examples: &[String], message: &str) -> Judgement {
        if business_function.trim().is_empty() {
            return Judgement::not_compared(Basis::NoBusinessFunction);
        }
        if !message.chars().any(char::is_alphanumeric) {
            return Judgement::not_compared(Basis::EmptyMessage);
        }
        if text::is_small_talk(message) {
            return Judgement::not_compared(Basis::SmallTalk);
        }
        if text::asks_for_person(message) {
            return Judgement::not_compared(Basis::AsksForPerson);
        }
        match self.compare(business_function, examples, message) {
            Ok(judgement) => judgement,
            Err(e) => {
                tracing::warn!(error = %e, "scope check could not embed; not judging");
                Judgement::not_compared(Basis::ModelFailed)
            }
        }
    }

    /// [`Self::judge`] on the blocking pool, so an actor never waits on the model.
    pub async fn judge_async(
        &self,
        business_function: String,
        examples: Vec<String>,
        message: String,
    ) -> Judgement {
        let check = self.clone();
        match tokio::task::spawn_blocking(move || {
            check.judge(&business_function, &examples, &message)
        })
        .await
        {
            Ok(judgement) => judgement,
            Err(e) => {
                tracing::warn!(error = %e, "scope check task failed; not judging");
                Judgement::not_compared(Basis::ModelFailed)
            }
        }
    }

    fn compare(
        &self,
        business_function: &str,
        examples: &[String],
        message: &str,
    ) -> Result<Judgement, EmbedError> {
        let business = self.business(business_function, examples)?;
        let whole = text::clip(message.trim(), text::MAX_TEXT_BYTES);
        let parts = text::parts(whole);
        let texts: Vec<&str> = std::iter::once(whole)
            .chain(parts.iter().map(String::as_str))
            .collect();
        let vectors = self.inner.embedder.embed(&texts)?;
        let non_english = text::looks_non_english(whole);
        let tuning = &self.inner.tuning;
        // The most in-scope of the message and its questions decides.
        let best = vectors
            .iter()
            .map(|v| self.signals(&business, v))
            .min_by(|a, b| a.score(tuning).total_cmp(&b.score(tuning)))
            .unwrap_or_default();
        Ok(best.judge(tuning, non_english))
    }

    fn signals(&self, business: &Business, message: &[f32]) -> Signals {
        let nearest = |vectors: &[Vec<f32>]| {
            vectors
                .iter()
                .map(|v| cosine(v, message))
                .fold(f32::MIN, f32::max)
                .max(0.0)
        };
        // The two nearest archetypes, averaged: one stray neighbour should not decide.
        let mut nearest_archetypes = [(None, 0.0_f32); OFF_TOPIC_NEIGHBOURS];
        for ((v, (archetype, _)), allowed) in self
            .inner
            .off_topic
            .iter()
            .zip(prototypes::OFF_TOPIC)
            .zip(&business.allowed)
        {
            if !allowed {
                continue;
            }
            let similarity = cosine(v, message);
            if let Some(slot) = nearest_archetypes.iter().position(|(_, s)| similarity > *s) {
                nearest_archetypes.copy_within(slot..OFF_TOPIC_NEIGHBOURS - 1, slot + 1);
                nearest_archetypes[slot] = (Some(*archetype), similarity);
            }
        }
        let archetype = nearest_archetypes[0].0;
        let off_topic =
            nearest_archetypes.iter().map(|(_, s)| s).sum::<f32>() / OFF_TOPIC_NEIGHBOURS as f32;
        Signals {
            business: nearest(&business.vectors),
            service: nearest(&self.inner.service),
            off_topic,
            archetype,
        }
    }

    /// The embedded business side, from the cache or embedded now (once per distinct text).
    fn business(
        &self,
        business_function: &str,
        examples: &[String],
    ) -> Result<Arc<Business>, EmbedError> {
        let key = business_key(business_function, examples);
        if let Some(hit) = self.cache().get(&key) {
            return Ok(hit);
        }
        let mut texts = text::phrases(business_function);
        texts.extend(
            examples
                .iter()
                .map(|e| text::clip(e.trim(), text::MAX_TEXT_BYTES))
                .filter(|e| e.chars().any(char::is_alphanumeric))
                .take(text::MAX_EXAMPLES)
                .map(str::to_string),
        );
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = self.inner.embedder.embed(&refs)?;
        let conflict = self.inner.tuning.archetype_conflict;
        // An archetype is dropped whole when any of its requests resembles the business: a
        // coding school's "fix my python code" makes every code request its own.
        let conflicting: Vec<Archetype> = self
            .inner
            .off_topic
            .iter()
            .zip(prototypes::OFF_TOPIC)
            .filter(|(a, _)| vectors.iter().any(|b| cosine(a, b) >= conflict))
            .map(|(_, (archetype, _))| *archetype)
            .collect();
        let allowed = prototypes::OFF_TOPIC
            .iter()
            .map(|(archetype, _)| !conflicting.contains(archetype))
            .collect();
        let business = Arc::new(Business { vectors, allowed });
        self.cache()
            .insert(key, Arc::clone(&business), business.vectors.len());
        Ok(business)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BoundedCache<[u8; 32], Arc<Business>>> {
        // A panic while holding the lock cannot leave the cache inconsistent (each operation
        // completes or does nothing), so a poisoned lock is used as is.
        self.inner
            .businesses
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The similarities of one text (the message or one of its questions).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Signals {
    business: f32,
    service: f32,
    off_topic: f32,
    archetype: Option<Archetype>,
}

impl Signals {
    /// How much closer to off-topic than to the business side (positive leans off-topic).
    fn score(&self, tuning: &Tuning) -> f32 {
        let business_side = self.business.max(self.service - tuning.service_discount);
        self.off_topic - business_side
    }

    fn judge(&self, tuning: &Tuning, non_english: bool) -> Judgement {
        let score = self.score(tuning);
        let margin = if non_english {
            tuning.decline_margin_non_english
        } else {
            tuning.decline_margin
        };
        let verdict = if score >= margin && self.off_topic >= tuning.min_off_topic_similarity {
            Verdict::OffTopic
        } else if score <= -tuning.in_scope_margin {
            Verdict::InScope
        } else {
            Verdict::Unsure
        };
        Judgement {
            verdict,
            off_topic_score: score,
            business_similarity: self.business,
            service_similarity: self.service,
            off_topic_similarity: self.off_topic,
            archetype: self.archetype,
            non_english,
            basis: Basis::Similarity,
        }
    }
}

/// The cache key of a business side: a hash of exactly the texts that get embedded.
fn business_key(business_function: &str, examples: &[String]) -> [u8; 32] {
    let mut hash = Sha256::new();
    let mut add = |text: &str| {
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    };
    add(text::clip(business_function.trim(), text::MAX_TEXT_BYTES));
    for example in examples.iter().take(text::MAX_EXAMPLES) {
        add(text::clip(example.trim(), text::MAX_TEXT_BYTES));
    }
    hash.finalize().into()
}

/// A map bounded in entries and in total weight; the least recently used entry goes first.
/// Eviction scans the entries (at most `max_entries`, and only when full).
#[derive(Debug)]
struct BoundedCache<K, V> {
    entries: HashMap<K, CacheEntry<V>>,
    /// A use counter: the smallest `last_used` is the least recently used entry.
    clock: u64,
    weight: usize,
    max_entries: usize,
    max_weight: usize,
}

#[derive(Debug)]
struct CacheEntry<V> {
    value: V,
    last_used: u64,
    weight: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedCache<K, V> {
    fn new(max_entries: usize, max_weight: usize) -> Self {
        BoundedCache {
            entries: HashMap::new(),
            clock: 0,
            weight: 0,
            max_entries,
            max_weight,
        }
    }

    fn get(&mut self, key: &K) -> Option<V> {
        self.clock += 1;
        let entry = self.entries.get_mut(key)?;
        entry.last_used = self.clock;
        Some(entry.value.clone())
    }

    /// Keeps `value`, evicting the least recently used entries until both bounds hold. A value
    /// heavier than the whole budget is not kept.
    fn insert(&mut self, key: K, value: V, weight: usize) {
        if weight > self.max_weight || self.max_entries == 0 {
            return;
        }
        if let Some(old) = self.entries.remove(&key) {
            self.weight -= old.weight;
        }
        while self.entries.len() >= self.max_entries || self.weight + weight > self.max_weight {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.weight -= evicted.weight;
            }
        }
        self.clock += 1;
        self.weight += weight;
        self.entries.insert(
            key,
            CacheEntry {
                value,
                last_used: self.clock,
                weight,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(business: f32, service: f32, off_topic: f32) -> Signals {
        Signals {
            business,
            service,
            off_topic,
            archetype: Some("poem"),
        }
    }

    #[test]
    fn declines_only_when_off_topic_wins_by_the_margin() {
        let t = Tuning::default();
        let clear = signals(0.1, 0.1, 0.1 + t.decline_margin + 0.3);
        assert_eq!(clear.judge(&t, false).verdict, Verdict::OffTopic);
        let close = signals(0.3, 0.1, 0.3 + t.decline_margin - 0.01);
        assert_eq!(close.judge(&t, false).verdict, Verdict::Unsure);
        let business = signals(0.7, 0.2, 0.3);
        assert_eq!(business.judge(&t, false).verdict, Verdict::InScope);
    }

    #[test]
    fn a_weak_archetype_match_never_declines() {
        let t = Tuning::default();
        let weak = signals(0.0, 0.0, t.min_off_topic_similarity - 0.01);
        assert_eq!(weak.judge(&t, false).verdict, Verdict::Unsure);
    }

    #[test]
    fn non_english_messages_need_the_larger_margin() {
        let t = Tuning::default();
        assert!(t.decline_margin_non_english > t.decline_margin);
        let between = (t.decline_margin + t.decline_margin_non_english) / 2.0;
        let s = signals(0.2, 0.0, 0.2 + between);
        assert_eq!(s.judge(&t, false).verdict, Verdict::OffTopic);
        assert_eq!(s.judge(&t, true).verdict, Verdict::Unsure);
    }

    #[test]
    fn generic_service_requests_count_for_the_business() {
        let t = Tuning::default();
        // Far from the business's own words, close to "where is my delivery".
        let s = signals(0.05, 0.8, 0.5);
        assert!(s.score(&t) < 0.0);
        assert_ne!(s.judge(&t, false).verdict, Verdict::OffTopic);
    }

    #[test]
    fn the_business_key_changes_with_any_text_and_not_with_padding() {
        let ex = vec!["where is my order".to_string()];
        let a = business_key("Shoe shop", &ex);
        assert_eq!(a, business_key("  Shoe shop ", &ex));
        assert_ne!(a, business_key("Shoe shop", &[]));
        assert_ne!(a, business_key("Shoe shops", &ex));
        // Length prefixes: moving text between fields changes the key.
        assert_ne!(
            business_key("ab", &["c".to_string()]),
            business_key("a", &["bc".to_string()])
        );
    }

    #[test]
    fn the_cache_evicts_the_least_recently_used_entry_when_full() {
        let mut cache = BoundedCache::new(2, 100);
        cache.insert("a", 1, 1);
        cache.insert("b", 2, 1);
        assert_eq!(cache.get(&"a"), Some(1));
        cache.insert("c", 3, 1);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&"b"), None);
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"c"), Some(3));
    }

    #[test]
    fn the_cache_keeps_its_total_weight_bounded() {
        let mut cache = BoundedCache::new(10, 10);
        cache.insert("a", 1, 4);
        cache.insert("b", 2, 4);
        cache.insert("c", 3, 4);
        assert!(cache.weight <= 10);
        assert_eq!(cache.get(&"a"), None);
        // Too heavy for the whole budget: not kept, nothing evicted for it.
        cache.insert("d", 4, 11);
        assert_eq!(cache.get(&"d"), None);
        assert_eq!(cache.len(), 2);
        // Replacing a key does not count its old weight twice.
        cache.insert("b", 5, 4);
        assert_eq!(cache.weight, 8);
        assert_eq!(cache.get(&"b"), Some(5));
    }
}

/// The check with the shipped model (loads it once per test binary, ~2 s in a debug build).
#[cfg(test)]
mod with_the_model {
    use super::*;

    const SHOES: &str =
        "Customer support for Acme's online shoe store: orders, shipping, returns, sizing";

    fn check() -> ScopeCheck {
        ScopeCheck::shared().unwrap()
    }

    #[test]
    fn a_clear_general_assistant_request_is_declined() {
        let j = check().judge(SHOES, &[], "write me a poem about the autumn leaves");
        assert_eq!(j.verdict, Verdict::OffTopic, "{j:?}");
        assert_eq!(j.archetype, Some("poem"));
    }

    #[test]
    fn a_plain_customer_question_is_not_declined() {
        let j = check().judge(SHOES, &[], "where is my order, I ordered boots last week");
        assert_ne!(j.verdict, Verdict::OffTopic, "{j:?}");
    }

    #[test]
    fn greetings_thanks_and_asking_for_a_person_are_never_declined() {
        for message in [
            "hi",
            "Thanks!",
            "bye",
            "I want to talk to a human",
            "hola",
            "👋",
        ] {
            let j = check().judge(SHOES, &[], message);
            assert_eq!(j.verdict, Verdict::Unsure, "{message}: {j:?}");
        }
    }

    #[test]
    fn without_a_business_function_nothing_is_judged() {
        for function in ["", "   "] {
            let j = check().judge(function, &[], "write me a poem");
            assert_eq!(j.verdict, Verdict::Unsure);
            assert_eq!(j.basis, Basis::NoBusinessFunction);
        }
    }

    #[test]
    fn one_in_scope_question_keeps_a_mixed_message_in_scope() {
        let j = check().judge(
            SHOES,
            &[],
            "Write me a poem about the sea. Also where is my order 4411?",
        );
        assert_ne!(j.verdict, Verdict::OffTopic, "{j:?}");
    }

    #[test]
    fn an_archetype_that_is_the_business_itself_is_not_used_against_it() {
        let school = "Support for CodeCamp, an online programming course: enrolment, payments, \
                      course content, help with the Python and JavaScript exercises";
        let j = check().judge(
            school,
            &[],
            "how do I write a javascript function that sorts an array",
        );
        assert_ne!(j.verdict, Verdict::OffTopic, "{j:?}");
        // The same request is off-topic for a shoe shop.
        let j = check().judge(
            SHOES,
            &[],
            "how do I write a javascript function that sorts an array",
        );
        assert_eq!(j.verdict, Verdict::OffTopic, "{j:?}");
    }

    #[test]
    fn each_business_is_embedded_once() {
        // A check of its own, so that other tests' businesses do not share its cache.
        let check = ScopeCheck::new(LocalEmbedder::shared().unwrap(), Tuning::default()).unwrap();
        let examples = vec!["do you ship to Canada".to_string()];
        for message in ["where is my parcel", "write a poem", "do you sell socks"] {
            check.judge(SHOES, &examples, message);
        }
        check.judge(
            "Front desk of a dental clinic: appointments",
            &[],
            "book a cleaning",
        );
        assert_eq!(check.cache().len(), 2);
    }

    #[tokio::test]
    async fn the_async_judgement_is_the_blocking_one() {
        let check = check();
        let blocking = check.judge(SHOES, &[], "tell me a joke");
        let async_one = check
            .judge_async(SHOES.to_string(), Vec::new(), "tell me a joke".to_string())
            .await;
        assert_eq!(blocking, async_one);
    }
}
