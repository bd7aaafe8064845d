//! Queries answered for other servers and asked of them: profiles.

use palisade_core::{Error, Result};
use ruma::{
    UserId,
    api::federation::{
        directory::get_public_rooms_filtered,
        query::{get_profile_information, get_room_information},
    },
};

use palisade_service::accounts::Profile;

use crate::Federation;

impl Federation {
    /// Another server's user's profile, asked of their server.
    pub(crate) async fn remote_profile(&self, user_id: &UserId) -> Result<Profile> {
        let request = get_profile_information::v1::Request::new(user_id.to_owned());
        let response = self.client.send(user_id.server_name(), request).await?;
        let text = |field: &str| response.get(field).and_then(|v| v.as_str()).map(str::to_owned);
        let fields = response
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "displayname" | "avatar_url"))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Ok(Profile { displayname: text("displayname"), avatar_url: text("avatar_url"), fields })
    }

    /// The profile of a user of this server, for other servers; `404` for anyone else.
    pub async fn local_profile(&self, user_id: &UserId) -> Result<Profile> {
        if !self.services.accounts.is_local(user_id) {
            return Err(Error::not_found("Profile was not found"));
        }
        self.services.accounts.profile(user_id).await
    }

    /// A local alias's room and the servers in it (`/query/directory`).
    pub async fn local_alias(
        &self,
        alias: &ruma::RoomAliasId,
    ) -> Result<(ruma::OwnedRoomId, Vec<ruma::OwnedServerName>)> {
        if alias.server_name() != self.services.config.server_name {
            return Err(Error::not_found("Room alias not found"));
        }
        let room_id = self.services.membership.resolve(alias.into()).await?;
        let own = &self.services.config.server_name;
        let mut servers = self.services.rooms.servers_in_room(&room_id).await?;
        if !servers.contains(own) {
            return Err(Error::not_found("This server is no longer in the room"));
        }
        // Joining servers try them in order: this one, which answered, first.
        servers.retain(|server| server != own);
        servers.insert(0, own.clone());
        Ok((room_id, servers))
    }

    /// Where an alias of another server points, and servers to join the room through
    /// (`/query/directory`).
    pub(crate) async fn remote_alias(
        &self,
        alias: &ruma::RoomAliasId,
    ) -> Result<(ruma::OwnedRoomId, Vec<ruma::OwnedServerName>)> {
        let request = get_room_information::v1::Request::new(alias.to_owned());
        let answer = self.client.send(alias.server_name(), request).await?;
        Ok((answer.room_id, answer.servers))
    }

    /// A page of another server's public room directory.
    /// A space of this server's as `origin` may see it (`/hierarchy`), unless the room's
    /// server ACL shuts `origin` out.
    pub async fn hierarchy_for(
        &self,
        origin: &ruma::ServerName,
        room_id: &ruma::RoomId,
        suggested_only: bool,
    ) -> Result<ruma::api::federation::space::get_hierarchy::v1::Response> {
        self.ensure_acl(origin, room_id).await?;
        self.services.directory.hierarchy_for_server(origin, room_id, suggested_only).await
    }

    /// A space and its children as another server describes them.
    pub(crate) async fn space_hierarchy(
        &self,
        server: &ruma::ServerName,
        room_id: &ruma::RoomId,
        suggested_only: bool,
    ) -> Result<ruma::api::federation::space::get_hierarchy::v1::Response> {
        let mut request =
            ruma::api::federation::space::get_hierarchy::v1::Request::new(room_id.to_owned());
        request.suggested_only = suggested_only;
        self.client.send(server, request).await
    }

    pub(crate) async fn public_rooms(
        &self,
        server: &ruma::ServerName,
        since: Option<&str>,
        limit: Option<ruma::UInt>,
        search: Option<&str>,
    ) -> Result<get_public_rooms_filtered::v1::Response> {
        let mut request = get_public_rooms_filtered::v1::Request::new();
        request.since = since.map(str::to_owned);
        request.limit = limit;
        request.filter.generic_search_term = search.map(str::to_owned);
        self.client.send(server, request).await
    }
}
