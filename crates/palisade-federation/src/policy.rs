//! The hook where a federation policy decides which servers this one talks to.

use ruma::ServerName;

/// Decides whether this server exchanges federation traffic with another, both ways: requests
/// from a refused server are answered `403`, and nothing is sent to it.
pub trait ServerPolicy: Send + Sync {
    /// Whether `server` may federate with this server.
    fn may_federate(&self, server: &ServerName) -> bool;
}

/// Federates with every server (until an allow/deny list is configured).
pub struct OpenFederation;

impl ServerPolicy for OpenFederation {
    fn may_federate(&self, _: &ServerName) -> bool {
        true
    }
}
