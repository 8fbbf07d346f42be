//! The clean-up that runs however this process exits: a shell holding the read end
//! of a pipe, which runs its script's clean-up when the pipe closes.

use std::process::{Child, ChildStdin, Command, Stdio};

use crate::{err, HarnessError};

/// A shell that runs `script`'s clean-up when the pipe to it closes: when the
/// owner is dropped, or when this process exits however it exits.
pub(crate) struct Reaper(Option<(Child, ChildStdin)>);

impl Reaper {
    /// Runs `sh -c script` with a pipe as stdin; the script decides what to do when
    /// the pipe closes (`cat >/dev/null` returns then).
    pub(crate) fn spawn(script: &str) -> Result<Reaper, HarnessError> {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("cannot start a helper shell: {e}")))?;
        let stdin = child.stdin.take().expect("piped stdin");
        Ok(Reaper(Some((child, stdin))))
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.0.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}
