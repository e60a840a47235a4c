//! `GET /api/tools`: the tool registry agents can be assigned from.

use actix_web::web;
use shared::ErrorBody;
use shared::resources::Tool;

use super::auth::Authorized;

/// Every tool an agent can be given.
#[utoipa::path(get, path = "/api/tools", tag = "agents",
    responses((status = 200, body = Vec<Tool>), (status = 401, body = ErrorBody)))]
pub async fn list(_auth: Authorized) -> web::Json<Vec<Tool>> {
    web::Json(crate::tools::registry())
}
