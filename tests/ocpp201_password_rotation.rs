//! A 2.0.1 station's Basic auth password changes through the operator API as 1.6's
//! AuthorizationKey does: a SetVariables of BasicAuthPassword goes to the station, and the new
//! password is stored (credentials file, and Redis in cluster mode) only once the station
//! answered that variable Accepted; a Rejected leaves the old one. (The same call from the
//! commands topic is refused: `kafka_commands`'s unit tests; only the node holding the
//! station stores it.)

mod common;

use common::pki::{basic, credentials_file};
use common::*;
use ocpp_gateway::security::Profile;
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;

const OLD: &[u8] = b"the-first-password-0001";
const NEW: &str = "the-second-password-0002";

/// A 2.0.1 station connected with Basic auth `password`.
fn connect_201(
    addr: std::net::SocketAddr,
    id: &str,
    password: &[u8],
) -> Result<Client, tungstenite::Error> {
    let mut request = format!("ws://{addr}/ocpp/{id}").into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("ocpp2.0.1"),
    );
    headers.insert(
        "Authorization",
        HeaderValue::from_str(&basic(id, password)).expect("header"),
    );
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WATCHDOG)).expect("timeout");
    tungstenite::client(request, stream)
        .map(|(client, _)| client)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => unreachable!("blocking socket"),
        })
}

fn set_password(admin: std::net::SocketAddr) -> std::thread::JoinHandle<HttpReply> {
    let body = json!({"action": "SetVariables", "payload": {"setVariableData": [
        {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"},
         "attributeValue": NEW}]}})
    .to_string();
    std::thread::spawn(move || {
        http(
            admin,
            "POST",
            "/api/v1/chargepoints/CS-PW/calls",
            None,
            Some(&body),
        )
    })
}

/// The station answers the SetVariables it receives with `status` for the password.
fn answer(client: &mut Client, status: &str) {
    let call = next_json(client);
    assert_eq!(call[2], "SetVariables", "{call}");
    let result: Value = json!({"setVariableResult": [{"attributeStatus": status,
        "component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}]});
    client
        .send(Message::text(json!([3, call[1], result]).to_string()))
        .expect("send");
}

#[test]
fn a_201_password_changes_only_once_the_station_accepted_it() {
    let dir = std::env::temp_dir().join(format!("ocpp-201-password-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let credentials = dir.join("credentials");
    credentials_file(&credentials, &[("CS-PW", OLD)]);
    let mut config = test_config();
    config.security.profile = Profile::BasicAuth;
    config.security.credentials = Some(credentials.clone());
    let server = TestServer::start(config);
    let mut station = connect_201(server.addr, "CS-PW", OLD).expect("the old password works");
    boot_v201(&mut station);

    let pending = set_password(server.admin());
    answer(&mut station, "Rejected");
    let reply = pending.join().expect("the API's reply");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply.json().get("credentials").is_none(),
        "not stored: {}",
        reply.body
    );
    assert!(
        connect_201(server.addr, "CS-PW", NEW.as_bytes()).is_err(),
        "not yet"
    );

    let pending = set_password(server.admin());
    answer(&mut station, "Accepted");
    let reply = pending.join().expect("the API's reply");
    assert_eq!(reply.json()["credentials"], "stored", "{}", reply.body);
    assert!(
        connect_201(server.addr, "CS-PW", OLD).is_err(),
        "the old password is gone"
    );
    let mut again = connect_201(server.addr, "CS-PW", NEW.as_bytes()).expect("the new one works");
    let beat = call_v201(&mut again, "hb", "Heartbeat", json!({}));
    assert_eq!(beat[0], 3, "{beat}");
    let reloaded =
        ocpp_gateway::security::credentials::Credentials::load(&credentials).expect("the file");
    assert!(reloaded.verify("CS-PW", NEW.as_bytes()));
    let _ = std::fs::remove_dir_all(&dir);
}
