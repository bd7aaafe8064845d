//! Push rules: `/pushrules/` and the per-rule endpoints clients use for notification settings
//! (muting a room, keywords).
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#push-rules-api>

use axum::{
    Json,
    extract::{Path, State},
    http::Method,
    routing,
};
use palisade_core::{Error, ErrorKind, Result};
use ruma::{
    api::client::push::{
        PushRule, delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
        get_pushrules_all, get_pushrules_global_scope, set_pushrule, set_pushrule_actions,
        set_pushrule_enabled,
    },
    push::{InsertPushRuleError, RemovePushRuleError, RuleKind},
};

use crate::{
    AppState, Ruma,
    error::ApiError,
    extract::Authenticated,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, all);
    let router = route(router, global);
    // Listing one kind has no request type in ruma (the spec leaves it out; Synapse and
    // clients use it).
    let router = ["r0", "v3"].into_iter().fold(router, |router, version| {
        let path = format!("/_matrix/client/{version}/pushrules/global/{{kind}}/");
        let router = router.add(Method::GET, &path, routing::get(of_kind));
        let path = format!("/_matrix/client/{version}/pushrules/{{*rest}}");
        router.add(Method::GET, &path, routing::any(unrecognized))
    });
    let router = route(router, get);
    let router = route(router, set);
    let router = route(router, delete);
    let router = route(router, enabled);
    let router = route(router, set_enabled);
    let router = route(router, actions);
    route(router, set_actions)
}

fn not_found(_: impl std::fmt::Debug) -> Error {
    Error::not_found("No such push rule")
}

/// Any other path under `/pushrules/` (an unknown scope, a kind without its trailing slash):
/// 400 `M_UNRECOGNIZED`, as Synapse answers, rather than an unknown endpoint's 404.
async fn unrecognized(_: Authenticated) -> std::result::Result<(), ApiError> {
    Err(Error::new(ErrorKind::UnrecognizedRequest, "Unrecognized push rule path").into())
}

/// `GET /_matrix/client/v3/pushrules/`
async fn all(
    state: AppState,
    request: Ruma<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response> {
    let rules = state.account_data.push_rules(request.session()?.user_id()).await?;
    Ok(get_pushrules_all::v3::Response::new(rules))
}

/// `GET /_matrix/client/v3/pushrules/global/`
async fn global(
    state: AppState,
    request: Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<get_pushrules_global_scope::v3::Response> {
    let rules = state.account_data.push_rules(request.session()?.user_id()).await?;
    Ok(get_pushrules_global_scope::v3::Response::new(rules))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/`: the rules of one kind, in priority order.
async fn of_kind(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    Path(kind): Path<String>,
) -> std::result::Result<Json<Vec<PushRule>>, ApiError> {
    let kind = RuleKind::from(kind.as_str());
    Ok(Json(state.account_data.push_rules_of_kind(session.user_id(), &kind).await?))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn get(
    state: AppState,
    request: Ruma<get_pushrule::v3::Request>,
) -> Result<get_pushrule::v3::Response> {
    let body = &request.body;
    let rule = state
        .account_data
        .push_rule(request.session()?.user_id(), body.kind.clone(), &body.rule_id)
        .await?;
    Ok(get_pushrule::v3::Response::new(rule))
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn set(
    state: AppState,
    request: Ruma<set_pushrule::v3::Request>,
) -> Result<set_pushrule::v3::Response> {
    let body = request.body.clone();
    state
        .account_data
        .update_push_rules(request.session()?.user_id(), |rules| {
            rules.insert(body.rule, body.after.as_deref(), body.before.as_deref()).map_err(|e| {
                match e {
                    InsertPushRuleError::UnknownRuleId => {
                        Error::not_found("Unknown before/after rule")
                    }
                    e => Error::invalid_param(e.to_string()),
                }
            })
        })
        .await?;
    Ok(set_pushrule::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
async fn delete(
    state: AppState,
    request: Ruma<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response> {
    let body = request.body.clone();
    state
        .account_data
        .update_push_rules(request.session()?.user_id(), |rules| {
            rules.remove(body.kind, &body.rule_id).map_err(|e| match e {
                RemovePushRuleError::NotFound => not_found(e),
                e => Error::invalid_param(e.to_string()),
            })
        })
        .await?;
    Ok(delete_pushrule::v3::Response::new())
}

/// `GET …/{ruleId}/enabled`
async fn enabled(
    state: AppState,
    request: Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<get_pushrule_enabled::v3::Response> {
    let (body, user) = (&request.body, request.session()?.user_id());
    let rule = state.account_data.push_rule(user, body.kind.clone(), &body.rule_id).await?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled))
}

/// `PUT …/{ruleId}/enabled`
async fn set_enabled(
    state: AppState,
    request: Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response> {
    let body = request.body.clone();
    state
        .account_data
        .update_push_rules(request.session()?.user_id(), |rules| {
            rules.set_enabled(body.kind, &body.rule_id, body.enabled).map_err(not_found)
        })
        .await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

/// `GET …/{ruleId}/actions`
async fn actions(
    state: AppState,
    request: Ruma<get_pushrule_actions::v3::Request>,
) -> Result<get_pushrule_actions::v3::Response> {
    let (body, user) = (&request.body, request.session()?.user_id());
    let rule = state.account_data.push_rule(user, body.kind.clone(), &body.rule_id).await?;
    Ok(get_pushrule_actions::v3::Response::new(rule.actions))
}

/// `PUT …/{ruleId}/actions`
async fn set_actions(
    state: AppState,
    request: Ruma<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response> {
    let body = request.body.clone();
    state
        .account_data
        .update_push_rules(request.session()?.user_id(), |rules| {
            rules.set_actions(body.kind, &body.rule_id, body.actions).map_err(not_found)
        })
        .await?;
    Ok(set_pushrule_actions::v3::Response::new())
}
