//! Push rules: `/pushrules/` and the per-rule endpoints clients use for notification settings
//! (muting a room, keywords).
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#push-rules-api>

use palisade_core::{Error, Result};
use ruma::{
    api::client::push::{
        delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
        get_pushrules_all, set_pushrule, set_pushrule_actions, set_pushrule_enabled,
    },
    push::{InsertPushRuleError, RemovePushRuleError},
};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, all);
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

/// `GET /_matrix/client/v3/pushrules/`
async fn all(
    state: AppState,
    request: Ruma<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response> {
    let rules = state.account_data.push_rules(request.session()?.user_id()).await?;
    Ok(get_pushrules_all::v3::Response::new(rules))
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
    let body = &request.body;
    let rules = state.account_data.push_rules(request.session()?.user_id()).await?;
    let rule = rules.get(body.kind.clone(), &body.rule_id).ok_or_else(|| not_found(()))?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
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
    let body = &request.body;
    let rules = state.account_data.push_rules(request.session()?.user_id()).await?;
    let rule = rules.get(body.kind.clone(), &body.rule_id).ok_or_else(|| not_found(()))?;
    Ok(get_pushrule_actions::v3::Response::new(rule.actions().to_vec()))
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
