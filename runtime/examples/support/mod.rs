//! What the benchmarks share (each includes this with `#[path]`; not an example of its own).

use runtime::config::Settings;
use runtime::store::bootstrap;

/// A database of the benchmark's own (`konstruct_test_<unix time>_bench_<tag>`, so the test
/// runs' clean-up drops it later), migrated; returns the runtime role's URL.
pub async fn database(tag: &str) -> anyhow::Result<String> {
    let defaults = Settings::default();
    let db = format!(
        "konstruct_test_{}_bench_{tag}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let app_url = format!("postgres://konstruct_app:konstruct_app@127.0.0.1:5432/{db}");
    let owner_url = format!("postgres://konstruct_owner:konstruct_owner@127.0.0.1:5432/{db}");
    bootstrap::setup_database(defaults.database.admin_url.expose(), &owner_url, &app_url).await?;
    runtime::store::migrate(&owner_url).await?;
    Ok(app_url)
}
