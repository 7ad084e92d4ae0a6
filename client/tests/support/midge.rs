//! Midge's own broker, in-process on 127.0.0.1, as a [`TestBroker`]; its
//! authorizer accepts anonymous clients and [`USER`](super::USER) with
//! [`PASSWORD`](super::PASSWORD), and refuses other passwords with 0x04.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use midge_broker::auth::{Authorizer, ClientInfo};
use midge_broker::config::SysConfig;
use midge_broker::{Broker, Config, ListenerConfig};
use midge_client::ConnectReturnCode;

use super::scenarios::TestBroker;

/// Anonymous or alice/wonderland.
struct TestAuth;

impl Authorizer for TestAuth {
    fn authenticate(
        &self,
        client: &ClientInfo<'_>,
        password: Option<&[u8]>,
    ) -> Result<(), ConnectReturnCode> {
        match (client.username, password) {
            (None, _) => Ok(()),
            (Some(super::USER), Some(p)) if p == super::PASSWORD.as_bytes() => Ok(()),
            _ => Err(ConnectReturnCode::BadUserNameOrPassword),
        }
    }
}

/// A midge broker for one test.
pub struct Midge {
    broker: Option<Broker>,
    addr: SocketAddr,
}

// `..Default::default()` keeps this compiling as listeners gain settings.
#[allow(clippy::needless_update)]
fn config(bind: SocketAddr) -> Config {
    let mut config = Config {
        listeners: vec![ListenerConfig {
            bind,
            ..Default::default()
        }],
        sys: SysConfig { interval_s: 0 },
        ..Default::default()
    };
    // In memory: tests run in parallel and must not share a data directory.
    config.persistence.enabled = false;
    config
}

impl Midge {
    /// Starts on a free port.
    pub async fn start() -> Midge {
        let broker = Broker::start_with_auth(
            config("127.0.0.1:0".parse().expect("addr")),
            Arc::new(TestAuth),
        )
        .await
        .expect("start midge");
        let addr = broker.local_addrs()[0];
        Midge {
            broker: Some(broker),
            addr,
        }
    }
}

impl TestBroker for Midge {
    fn port(&self) -> u16 {
        self.addr.port()
    }

    async fn stop(&mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        for _ in 0..50 {
            match Broker::start_with_auth(config(self.addr), Arc::new(TestAuth)).await {
                Ok(broker) => {
                    self.broker = Some(broker);
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        panic!("midge did not restart on {}", self.addr);
    }
}
