//! Access control hooks: who may connect, subscribe, publish and receive.
//!
//! The broker asks an [`Authorizer`] at each decision point: CONNECT,
//! each SUBSCRIBE filter, each PUBLISH (the client's own and its will), and
//! each delivery to a subscriber. The default, [`AllowAll`], says yes to
//! everything; password files, TLS identities and ACLs plug in here.

// Password files, ACL files and the `[auth]` table (security issue).
pub mod acl;
pub mod password;
pub mod state;
pub mod throttle;

use std::net::SocketAddr;

use midge_protocol::ConnectReturnCode;

/// What the broker knows about a client when it asks.
#[derive(Clone, Debug)]
pub struct ClientInfo<'a> {
    /// The client id (assigned by the broker when the client sent none).
    pub client_id: &'a str,
    /// The user name from CONNECT.
    pub username: Option<&'a str>,
    /// The peer address.
    pub peer: SocketAddr,
}

/// Decides what clients may do. Every method has a permissive default.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether a CONNECT is accepted; `Err` carries the CONNACK code to
    /// refuse it with (0x04 bad user name or password, 0x05 not authorised).
    fn authenticate(
        &self,
        client: &ClientInfo<'_>,
        password: Option<&[u8]>,
    ) -> Result<(), ConnectReturnCode> {
        let _ = (client, password);
        Ok(())
    }

    /// Whether the client may subscribe to `filter`; a refusal is SUBACK
    /// return code 0x80.
    fn may_subscribe(&self, client: &ClientInfo<'_>, filter: &str) -> bool {
        let _ = (client, filter);
        true
    }

    /// Whether the client may publish to `topic`; a refused message is
    /// acknowledged and dropped, as MQTT 3.1.1 has no way to refuse it.
    fn may_publish(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        let _ = (client, topic);
        true
    }

    /// Whether the client may receive a message on `topic` through one of
    /// its subscriptions.
    fn may_receive(&self, client: &ClientInfo<'_>, topic: &str) -> bool {
        let _ = (client, topic);
        true
    }

    /// Whether [`Authorizer::may_receive`] can refuse anything now. When
    /// false the broker skips that check for each delivery (it is on the
    /// fan-out's hot path). The default says true: every delivery is asked.
    fn checks_receiving(&self) -> bool {
        true
    }
}

/// Allows everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn checks_receiving(&self) -> bool {
        false
    }
}
