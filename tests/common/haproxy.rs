//! HAProxy (Debian's package) with one of the deployment kit's configurations in front of
//! three gateway nodes on loopback; killed when dropped. `deploy/haproxy.cfg` passes TCP
//! through; `deploy/haproxy-tls-offload.cfg` ends TLS itself.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::{free_port, http, wait_until};

pub struct Haproxy {
    child: Child,
    /// Where charge points connect (`deploy/haproxy.cfg`; the profile 2 frontend of the
    /// offload configuration).
    pub listen: SocketAddr,
    /// The offload configuration's profile 3 frontend.
    pub listen_mtls: SocketAddr,
    /// HAProxy's stats page.
    pub stats: SocketAddr,
}

/// The files the offload configuration reads.
pub struct OffloadFiles<'a> {
    /// Server certificate chain and key in one PEM file.
    pub cert: &'a Path,
    pub client_ca: &'a Path,
    pub client_crl: &'a Path,
}

fn loopback() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

impl Haproxy {
    /// `deploy/haproxy.cfg` in front of `nodes` (each: OCPP listener, admin port for `/health`).
    pub fn start(nodes: [(SocketAddr, u16); 3]) -> Haproxy {
        let mut env = Vec::new();
        for (index, (addr, admin)) in nodes.iter().enumerate() {
            env.push((format!("OCPP_NODE{}", index + 1), addr.to_string()));
            env.push((format!("OCPP_ADMIN_PORT{}", index + 1), admin.to_string()));
        }
        Haproxy::launch("haproxy.cfg", "OCPP_LISTEN", env)
    }

    /// `deploy/haproxy-tls-offload.cfg` in front of `nodes` (each: profile 2 listener, profile
    /// 3 listener, admin port).
    pub fn start_offload(
        files: OffloadFiles<'_>,
        nodes: [(SocketAddr, SocketAddr, u16); 3],
    ) -> Haproxy {
        let mut env = vec![
            ("OCPP_TLS_CERT".to_owned(), files.cert.display().to_string()),
            (
                "OCPP_CLIENT_CA".to_owned(),
                files.client_ca.display().to_string(),
            ),
            (
                "OCPP_CLIENT_CRL".to_owned(),
                files.client_crl.display().to_string(),
            ),
        ];
        for (index, (tls, mtls, admin)) in nodes.iter().enumerate() {
            env.push((format!("OCPP_TLS_NODE{}", index + 1), tls.to_string()));
            env.push((format!("OCPP_MTLS_NODE{}", index + 1), mtls.to_string()));
            env.push((format!("OCPP_ADMIN_PORT{}", index + 1), admin.to_string()));
        }
        Haproxy::launch("haproxy-tls-offload.cfg", "OCPP_LISTEN_TLS", env)
    }

    fn launch(file: &str, listen_var: &str, env: Vec<(String, String)>) -> Haproxy {
        let (listen, listen_mtls, stats) = (loopback(), loopback(), loopback());
        let mut command = Command::new("haproxy");
        command
            .arg("-db")
            // maxconn from the command line: the file's 200,000 wants 400,000 descriptors,
            // more than this machine's process limit.
            .args(["-n", "2000"])
            .arg("-f")
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("deploy")
                    .join(file),
            )
            .env(listen_var, listen.to_string())
            .env("OCPP_LISTEN_MTLS", listen_mtls.to_string())
            .env("OCPP_STATS", stats.to_string())
            .envs(env)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("haproxy starts");
        let haproxy = Haproxy {
            child,
            listen,
            listen_mtls,
            stats,
        };
        wait_until("HAProxy's stats page", || TcpStream::connect(stats).is_ok());
        haproxy
    }

    /// HAProxy's view of one server (`node1`..`node3`) of the backend `gateways`, from its
    /// stats CSV: "UP", "DOWN", ...
    pub fn status(&self, server: &str) -> Option<String> {
        self.status_in("gateways", server)
    }

    /// The same for a server of `backend`.
    pub fn status_in(&self, backend: &str, server: &str) -> Option<String> {
        let reply = http(self.stats, "GET", "/;csv", None, None);
        reply.body.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields.first() == Some(&backend) && fields.get(1) == Some(&server))
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
