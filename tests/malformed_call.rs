//! Malformed CALLs get the CALLERROR OCPP-J 1.6 prescribes, with the 1.6 spellings; messages
//! with no readable id are counted and the connection keeps working.

mod common;

use common::*;
use serde_json::json;
use tungstenite::Message;

fn send_text(client: &mut Client, text: &str) {
    client.send(Message::text(text.to_owned())).unwrap();
}

#[test]
fn malformed_calls_get_the_right_call_error() {
    let server = TestServer::start(test_config());
    let mut client = connect(&server, "CP-bad");
    boot(&mut client);

    for (text, id, code) in [
        (r#"[2,"m1","Heartbeat"]"#, "m1", "ProtocolError"),
        (r#"[2,"m2","Heartbeat",null]"#, "m2", "FormationViolation"),
        (
            r#"[2,"m3","Heartbeat",{},"extra"]"#,
            "m3",
            "FormationViolation",
        ),
        (r#"[2,"m4","NoSuchAction",{}]"#, "m4", "NotImplemented"),
        (
            r#"[2,"m5","Heartbeat",{"unexpected":1}]"#,
            "m5",
            "FormationViolation",
        ),
        (
            r#"[2,"m6","BootNotification",{"chargePointVendor":"V"}]"#,
            "m6",
            "OccurenceConstraintViolation",
        ),
    ] {
        send_text(&mut client, text);
        let reply = next_json(&mut client);
        assert_eq!(reply[0], 4, "{text} -> {reply}");
        assert_eq!(reply[1], id);
        assert_eq!(reply[2], code, "{text} -> {reply}");
        assert!(reply[3].is_string());
        assert_eq!(reply[4], json!({}));
    }

    // Nothing to answer: counted, ignored, and the connection still works. The 500 ignored
    // frames arrive in one burst, more than the loop reads from one connection per turn.
    for text in ["not json", "{}", r#"[2,5,"Heartbeat",{}]"#] {
        send_text(&mut client, text);
    }
    for _ in 0..500 {
        client.write(Message::text(r#"[9,"x"]"#)).unwrap();
    }
    let reply = call(&mut client, "after", "Heartbeat", json!({}));
    assert_eq!(reply[1], "after");
    let stats = server.stats();
    assert_eq!(stats.unanswerable_frames, 3);
    assert_eq!(stats.ignored_frames, 500);
}
