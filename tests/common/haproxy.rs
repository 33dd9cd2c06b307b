//! HAProxy (Debian's package) with the deployment kit's configuration, `deploy/haproxy.cfg`,
//! in front of three gateway nodes on loopback; killed when dropped.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};

use super::{free_port, http, wait_until};

pub struct Haproxy {
    child: Child,
    /// Where charge points connect.
    pub listen: SocketAddr,
    /// HAProxy's stats page.
    pub stats: SocketAddr,
}

impl Haproxy {
    /// HAProxy in front of `nodes` (each: OCPP listener, admin port for `/health`).
    pub fn start(nodes: [(SocketAddr, u16); 3]) -> Haproxy {
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let stats: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut command = Command::new("haproxy");
        command
            .arg("-db")
            // maxconn from the command line: the file's 200,000 wants 400,000 descriptors,
            // more than this machine's process limit.
            .args(["-n", "2000"])
            .arg("-f")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"))
            .env("OCPP_LISTEN", listen.to_string())
            .env("OCPP_STATS", stats.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (index, (addr, admin)) in nodes.iter().enumerate() {
            command
                .env(format!("OCPP_NODE{}", index + 1), addr.to_string())
                .env(format!("OCPP_ADMIN_PORT{}", index + 1), admin.to_string());
        }
        let child = command.spawn().expect("haproxy starts");
        let haproxy = Haproxy {
            child,
            listen,
            stats,
        };
        wait_until("HAProxy's stats page", || TcpStream::connect(stats).is_ok());
        haproxy
    }

    /// HAProxy's view of one server (`node1`..`node3`), from its stats CSV: "UP", "DOWN", ...
    pub fn status(&self, server: &str) -> Option<String> {
        let reply = http(self.stats, "GET", "/;csv", None, None);
        reply.body.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields.first() == Some(&"gateways") && fields.get(1) == Some(&server))
                .then(|| fields.get(17).unwrap_or(&"").to_string())
        })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
