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
