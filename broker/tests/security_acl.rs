//! The ACL matrix through a running broker: read / write / readwrite /
//! deny, `%c` / `%u` patterns, wildcard subscriptions that must not leak
//! denied topics (live or retained), anonymous rules, the will topic at
//! CONNECT and `$SYS`.
//!
//! No password file here: user names are taken as given, which is what
//! the ACL needs to be exercised.

#[path = "security_support.rs"]
mod support;

use midge_broker::auth::state::AuthConfig;
use midge_broker::Broker;
use midge_protocol::{ConnectReturnCode, QoS, SubscribeReturnCode};
use support::{config, listener, tcp, Pki, WAIT};
use tokio::net::TcpStream;

const ACL: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write commands/+

user bob
topic read alice/#
topic read public/#

user admin
topic read $SYS/#
topic readwrite #

pattern readwrite clients/%c/#
pattern read users/%u/inbox
";

const GRANTED0: SubscribeReturnCode = SubscribeReturnCode::Success(QoS::AtMostOnce);
const GRANTED1: SubscribeReturnCode = SubscribeReturnCode::Success(QoS::AtLeastOnce);
const REFUSED: SubscribeReturnCode = SubscribeReturnCode::Failure;

async fn broker(pki: &Pki) -> Broker {
    pki.write("acl", ACL);
    let auth = AuthConfig {
        allow_anonymous: Some(true),
        password_file: None,
        acl_file: Some(pki.path("acl")),
    };
    let mut cfg = config(vec![listener(None)], auth);
    cfg.sys.interval_s = 1;
    support::start(cfg).await
}

async fn client(broker: &Broker, id: &str, user: Option<&str>) -> support::Client<TcpStream> {
    let mut c = tcp(broker.local_addrs()[0]).await;
    let code = c.connect(id, user, None).await;
    assert_eq!(code, Some(ConnectReturnCode::Accepted), "{id}");
    c
}

#[tokio::test]
async fn read_write_readwrite_and_deny() {
    let pki = Pki::new();
    let b = broker(&pki).await;
    let mut alice = client(&b, "a", Some("alice")).await;
    let mut bob = client(&b, "b", Some("bob")).await;
    assert_eq!(alice.subscribe("alice/#", QoS::AtLeastOnce).await, GRANTED1);
    assert_eq!(bob.subscribe("alice/#", QoS::AtLeastOnce).await, GRANTED1);

    // readwrite: alice writes, both read.
    alice.publish("alice/news", "1", QoS::AtLeastOnce).await;
    assert_eq!(
        bob.next_publish(WAIT).await,
        Some(("alice/news".into(), "1".into()))
    );
    assert_eq!(
        alice.next_publish(WAIT).await,
        Some(("alice/news".into(), "1".into()))
    );

    // deny wins over alice's readwrite: acknowledged, dropped.
    alice
        .publish("alice/secret/plan", "2", QoS::AtLeastOnce)
        .await;
    // read only: bob's publish is acknowledged and dropped.
    bob.publish("alice/forged", "3", QoS::AtLeastOnce).await;
    // write only: alice may publish on commands/+ but not read it back.
    alice.publish("commands/reboot", "4", QoS::AtMostOnce).await;
    assert_eq!(
        alice.subscribe("commands/+", QoS::AtMostOnce).await,
        REFUSED
    );
    assert!(alice.ping().await && bob.ping().await);
    assert_eq!(alice.drain().await, vec![]);
    assert_eq!(bob.drain().await, vec![]);
    b.shutdown().await;
}

#[tokio::test]
async fn denied_filters_get_suback_0x80() {
    let pki = Pki::new();
    let b = broker(&pki).await;
    let mut alice = client(&b, "a", Some("alice")).await;
    assert_eq!(
        alice.subscribe("alice/secret/#", QoS::AtMostOnce).await,
        REFUSED
    );
    assert_eq!(alice.subscribe("bob/#", QoS::AtMostOnce).await, REFUSED);
    assert_eq!(alice.subscribe("alice/+", QoS::AtMostOnce).await, GRANTED0);
    let mut nobody = client(&b, "n", Some("nobody")).await;
    assert_eq!(nobody.subscribe("alice/#", QoS::AtMostOnce).await, REFUSED);
    // `#` overlaps the pattern `clients/%c/#`, which applies to everyone.
    assert_eq!(nobody.subscribe("#", QoS::AtMostOnce).await, GRANTED0);
    b.shutdown().await;
}

#[tokio::test]
async fn wildcard_subscriptions_do_not_leak_denied_topics() {
    let pki = Pki::new();
    let b = broker(&pki).await;
    let mut admin = client(&b, "adm", Some("admin")).await;
    // Retained first: bob must not get it when he subscribes.
    let mut retained =
        midge_protocol::Publish::new("commands/old", bytes::Bytes::from_static(b"r"));
    retained.retain = true;
    admin.send(midge_protocol::Packet::Publish(retained)).await;
    assert!(admin.ping().await);

    let mut bob = client(&b, "b", Some("bob")).await;
    assert_eq!(
        bob.subscribe("#", QoS::AtMostOnce).await,
        GRANTED0,
        "alice/# is readable"
    );
    for topic in ["commands/x", "alice/ok", "admin/private", "public/note"] {
        admin.publish(topic, topic, QoS::AtLeastOnce).await;
    }
    let got: Vec<String> = bob.drain().await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(got, vec!["alice/ok".to_owned(), "public/note".to_owned()]);
    b.shutdown().await;
}

#[tokio::test]
async fn patterns_substitute_client_id_and_user_name() {
    let pki = Pki::new();
    let b = broker(&pki).await;
    let mut dev = client(&b, "dev1", None).await;
    assert_eq!(
        dev.subscribe("clients/dev1/#", QoS::AtMostOnce).await,
        GRANTED0
    );
    assert_eq!(
        dev.subscribe("clients/dev2/#", QoS::AtMostOnce).await,
        REFUSED
    );
    dev.publish("clients/dev1/status", "up", QoS::AtMostOnce)
        .await;
    assert_eq!(
        dev.next_publish(WAIT).await,
        Some(("clients/dev1/status".into(), "up".into()))
    );

    let mut carol = client(&b, "c", Some("carol")).await;
    assert_eq!(
        carol.subscribe("users/carol/inbox", QoS::AtMostOnce).await,
        GRANTED0
    );
    assert_eq!(
        carol.subscribe("users/dave/inbox", QoS::AtMostOnce).await,
        REFUSED
    );
    let mut admin = client(&b, "adm", Some("admin")).await;
    admin
        .publish("users/carol/inbox", "hi", QoS::AtLeastOnce)
        .await;
    assert_eq!(
        carol.next_publish(WAIT).await,
        Some(("users/carol/inbox".into(), "hi".into()))
    );
    // A client id with a wildcard cannot widen a pattern.
    let mut sly = client(&b, "#", None).await;
    assert_eq!(sly.subscribe("clients/#", QoS::AtMostOnce).await, REFUSED);
    b.shutdown().await;
}

#[tokio::test]
async fn anonymous_clients_get_the_rules_before_any_user_line() {
    let pki = Pki::new();
    let b = broker(&pki).await;
    let mut anon = client(&b, "anon", None).await;
    assert_eq!(anon.subscribe("public/#", QoS::AtMostOnce).await, GRANTED0);
    assert_eq!(anon.subscribe("alice/#", QoS::AtMostOnce).await, REFUSED);
    anon.publish("public/spam", "x", QoS::AtLeastOnce).await;
    assert_eq!(
        anon.drain().await,
        vec![],
        "read-only for anonymous clients"
    );
    let mut admin = client(&b, "adm", Some("admin")).await;
    admin.publish("public/news", "y", QoS::AtMostOnce).await;
    assert_eq!(
        anon.next_publish(WAIT).await,
        Some(("public/news".into(), "y".into()))
    );
    b.shutdown().await;
}

#[tokio::test]
async fn the_will_topic_is_checked_for_write_at_connect() {
    let pki = Pki::new();
    let b = broker(&pki).await;
    let addr = b.local_addrs()[0];
    let mut bob = tcp(addr).await;
    let code = bob
        .connect_with("b", Some("bob"), None, Some("alice/bob-died"))
        .await;
    assert_eq!(code, Some(ConnectReturnCode::NotAuthorized));
    let mut alice = tcp(addr).await;
    let code = alice
        .connect_with("a", Some("alice"), None, Some("alice/gone"))
        .await;
    assert_eq!(code, Some(ConnectReturnCode::Accepted));
    b.shutdown().await;
}

#[tokio::test]
async fn sys_topics_are_readable_only_where_the_acl_says() {
    let pki = Pki::new();
    let b = broker(&pki).await;
    let mut bob = client(&b, "b", Some("bob")).await;
    assert_eq!(bob.subscribe("$SYS/#", QoS::AtMostOnce).await, REFUSED);
    let mut admin = client(&b, "adm", Some("admin")).await;
    assert_eq!(admin.subscribe("$SYS/#", QoS::AtMostOnce).await, GRANTED0);
    let (topic, _) = admin.next_publish(WAIT).await.expect("a $SYS update");
    assert!(topic.starts_with("$SYS/"), "{topic}");
    // `topic readwrite #` alone does not open $SYS: the read rule does.
    admin
        .publish("$SYS/broker/forged", "x", QoS::AtMostOnce)
        .await;
    assert!(admin.ping().await);
    b.shutdown().await;
}
