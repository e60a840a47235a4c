//! The knowledge base and long-term memory on the wire: documents and their indexing state,
//! retrieval previews, citations, and what the agents remember about end users.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AgentId, ConversationId, EndUserId, text_enum};

/// Where a document is in its indexing. Every state but `ready` and `failed` moves on by itself;
/// `failed` carries its reason and can be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DocumentStatus {
    /// Waiting for a worker.
    Queued,
    /// Reading the original (fetching a URL, parsing a PDF).
    Extracting,
    /// Turning its passages into vectors; `progress` counts them.
    Embedding,
    /// Searchable.
    Ready,
    /// Stopped; `error` says why.
    Failed,
}

text_enum!(DocumentStatus {
    Queued => "queued",
    Extracting => "extracting",
    Embedding => "embedding",
    Ready => "ready",
    Failed => "failed",
});

impl DocumentStatus {
    /// Still moving (a worker has it or will).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Queued | Self::Extracting | Self::Embedding)
    }
}

/// How a document arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DocumentSource {
    Upload,
    Url,
}

text_enum!(DocumentSource { Upload => "upload", Url => "url" });

/// A document of the tenant's knowledge base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Document {
    pub id: Uuid,
    pub title: String,
    pub source: DocumentSource,
    /// The address it was imported from (URL imports only).
    pub url: Option<String>,
    /// The uploaded file's name, as given (display only: the type is read from the content).
    pub filename: Option<String>,
    /// `markdown`, `text`, `html` or `pdf`, once known.
    pub format: Option<String>,
    pub size_bytes: u64,
    pub status: DocumentStatus,
    /// Why it failed, in Konstruct's words.
    pub error: Option<String>,
    /// Passages embedded so far, of `progress_total` (0 of 0 until they are known).
    pub progress_done: u32,
    pub progress_total: u32,
    /// Searchable passages.
    pub chunks: u32,
    pub pages: Option<u32>,
    /// The agents that use it; `None`: every agent of the tenant.
    pub agent_ids: Option<Vec<AgentId>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
}

/// `POST /api/tenants/{tenant_id}/knowledge/import`: fetch a document from a public URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UrlImport {
    pub url: String,
    /// Shown in citations; the page's own title when empty.
    #[serde(default)]
    pub title: String,
    /// The agents that use it; every agent when absent.
    #[serde(default)]
    pub agent_ids: Option<Vec<AgentId>>,
}

/// `PUT /api/tenants/{tenant_id}/knowledge/{document_id}`: what can change after upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DocumentUpdate {
    pub title: String,
    /// `None`: every agent of the tenant.
    pub agent_ids: Option<Vec<AgentId>>,
}

/// `POST /api/tenants/{tenant_id}/knowledge/search`: what an agent would retrieve for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KnowledgeQuery {
    pub q: String,
    /// Only the documents this agent uses; every document when absent.
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    /// At most 20; 5 by default.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// One retrieved passage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Passage {
    pub document_id: Uuid,
    pub chunk_id: Uuid,
    pub title: String,
    pub url: Option<String>,
    /// The headings the passage sits under, e.g. "Refunds › Card payments".
    pub heading: String,
    pub text: String,
    /// Cosine similarity to the query, −1…1.
    pub score: f32,
}

/// The answer to a knowledge search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnowledgeResults {
    /// Best first; only passages at or above `floor`.
    pub passages: Vec<Passage>,
    /// The relevance floor below which passages are not used.
    pub floor: f32,
    /// The embedding model the index is built with.
    pub model: String,
}

/// A source a reply cites: `[n]` in the reply's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Citation {
    pub n: u32,
    pub document_id: Uuid,
    pub chunk_id: Uuid,
    pub title: String,
    pub url: Option<String>,
    pub heading: String,
    pub score: f32,
}

/// Something an agent remembers about an end user, from an earlier conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Memory {
    pub id: Uuid,
    pub end_user_id: EndUserId,
    pub text: String,
    /// The conversation it was learnt in.
    pub conversation_id: Option<ConversationId>,
    pub created_at: DateTime<Utc>,
}

/// The tenant's embedding index: which model its vectors are in, and a rebuild with another
/// model while it runs (the old index keeps answering until the new one is complete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KnowledgeIndex {
    /// `local` (the model shipped with Konstruct), or a provider's model such as
    /// `openai:text-embedding-3-small` or `ollama:nomic-embed-text`.
    pub model: String,
    pub dimension: u32,
    /// The model an index is being built with, when a change is under way.
    pub building: Option<String>,
    /// Passages embedded with the new model so far, of `building_total`.
    pub building_done: u32,
    pub building_total: u32,
    /// Why the last rebuild failed, if it did (the old index stayed in use).
    pub building_error: Option<String>,
    /// The models this platform offers.
    pub available: Vec<String>,
}

/// `PUT /api/tenants/{tenant_id}/knowledge/index`: rebuild the index with another model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KnowledgeIndexChange {
    pub model: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text_enum::assert_serde_names;

    #[test]
    fn stored_names_are_the_wire_names() {
        assert_serde_names(DocumentStatus::ALL, |v| v.as_str());
        assert_serde_names(DocumentSource::ALL, |v| v.as_str());
        assert!(DocumentStatus::Embedding.is_active());
        assert!(!DocumentStatus::Failed.is_active());
    }
}
