//! The command line: --help, --version, and configuration errors that name the file and key
//! (exit code 2).

use std::process::Command;

fn gateway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ocpp-gateway"))
        .args(args)
        .output()
        .expect("runs")
}

#[test]
fn help_and_version() {
    let help = gateway(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--config"));
    let version = gateway(&["--version"]);
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn unknown_argument_is_a_usage_error() {
    let out = gateway(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_config_names_file_and_key() {
    let dir = std::env::temp_dir().join(format!("ocpp-gateway-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text, key) in [
        (
            "unknown.toml",
            "[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n",
            "lisen",
        ),
        (
            "invalid.toml",
            "[websocket]\npong_timeout = \"soon\"\n",
            "websocket.pong_timeout",
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let out = gateway(&["--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name) && stderr.contains(key),
            "{name}: {stderr}"
        );
    }
    let missing = gateway(&["--config", dir.join("missing.toml").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn credential_prints_a_line_the_gateway_verifies() {
    use std::io::Write;
    let run = |args: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocpp-gateway"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        // A child that refuses its arguments exits without reading stdin: the write may then
        // meet a closed pipe, which is no failure of the test.
        let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        if let Err(e) = written {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
        }
        child.wait_with_output().unwrap()
    };
    let out = run(&["credential", "CP:7"], "a-sixteen-byte-k\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let dir = std::env::temp_dir().join(format!("ocpp-gateway-cred-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("credentials");
    std::fs::write(&path, &line).unwrap();
    let store = ocpp_gateway::security::credentials::Credentials::load(&path).unwrap();
    assert!(store.verify("CP:7", b"a-sixteen-byte-k"));

    let out = run(
        &["credential", "CP8", "--hex"],
        "00ff00ff00ff00ff00ff00ff00ff00ff\n",
    );
    assert!(out.status.success());
    std::fs::write(&path, out.stdout).unwrap();
    let store = ocpp_gateway::security::credentials::Credentials::load(&path).unwrap();
    assert!(store.verify(
        "CP8",
        &[
            0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF, 0, 0xFF
        ]
    ));

    for (args, stdin) in [
        (&["credential", "CP8", "--hex"][..], "zz\n"),
        (&["credential", "CP8"][..], "short\n"),
        (&["credential", " CP8"][..], "a-sixteen-byte-k\n"),
        (&["credential", "CP 8"][..], "a-sixteen-byte-k\n"),
        (&["credential", "CP\u{3164}8"][..], "a-sixteen-byte-k\n"),
        (&["credential"][..], ""),
    ] {
        assert_eq!(run(args, stdin).status.code(), Some(2), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
