//! The tool registry: what an agent can be given. Small today; tools are implemented by later
//! features, and an agent may only be assigned tools listed here.

use shared::resources::Tool;

/// Every tool, by stable id.
pub fn registry() -> Vec<Tool> {
    vec![
        Tool {
            id: "knowledge_base_search".into(),
            name: "Knowledge base search".into(),
            description: "Searches the tenant's knowledge base and cites what it finds.".into(),
        },
        Tool {
            id: "handoff_to_human".into(),
            name: "Hand off to a human".into(),
            description: "Passes the conversation to a person when the agent cannot help.".into(),
        },
    ]
}

/// Whether `id` names a registered tool.
pub fn exists(id: &str) -> bool {
    registry().iter().any(|t| t.id == id)
}
