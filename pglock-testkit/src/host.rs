//! What this process finds on the machine: a free loopback port, whether it runs
//! as root, and the ids of the `postgres` user.

use std::net::TcpListener;
use std::process::Command;

use crate::{err, HarnessError};

/// A loopback port nobody listens on (at the time of asking).
pub(crate) fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("no free loopback port: {e}")))
}

/// Whether this process runs as root (then servers run as `postgres`).
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The uid and gid of the `postgres` user.
pub(crate) fn postgres_ids() -> Result<(u32, u32), HarnessError> {
    let id = |flag: &str| -> Result<u32, HarnessError> {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .map_err(|e| err(format!("cannot run id: {e}")))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                err(
                    "running as root, but there is no `postgres` user to run the server as \
                 (PostgreSQL refuses to run as root): install the Debian package \
                 `postgresql` or create the user",
                )
            })
    };
    Ok((id("-u")?, id("-g")?))
}
