//! Over `server.max_connections` (across loops) a handshake is answered 503 with Retry-After,
//! and a slot freed by a disconnect can be used again.

mod common;

use common::*;

#[test]
fn over_the_limit_gets_503_with_retry_after() {
    let mut config = test_config();
    config.server.max_connections = 3;
    let server = TestServer::start(config);
    let mut held: Vec<Client> = (0..3)
        .map(|i| connect(&server, &format!("CP{i}")))
        .collect();
    for client in &mut held {
        boot(client);
    }
    match try_connect(server.addr, &server.url("CP-extra"), "ocpp1.6") {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            let retry: u32 = response.headers()["Retry-After"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry > 0);
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    assert_eq!(server.stats().over_capacity, 1);

    let mut gone = held.pop().expect("a client");
    gone.close(None).expect("close");
    let _ = expect_close(&mut gone);
    server.wait_for("the slot to be freed", |s| s.connections == 2);
    let mut again = connect(&server, "CP-again");
    boot(&mut again);
}
