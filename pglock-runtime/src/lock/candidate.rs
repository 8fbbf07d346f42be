//! A leadership candidate's campaign: the task that, on a session of its own,
//! waits inside the server for the leadership's lock, announces the election a
//! grace later, checks that the session lives while it leads, and re-enters the
//! election when a leadership ends.
//!
//! The wait is re-issued every `renew` (a `lock_timeout` on the wait statement
//! alone): a statement that waits holds a snapshot, and a snapshot held for the
//! whole life of a leader would keep `VACUUM` from cleaning up after anything
//! that changed since, database-wide. A re-issued wait is granted as promptly;
//! the failover does not wait for the renewal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch, Notify};
use tokio_postgres::types::Type;

use crate::error::{Error, ErrorKind};
use crate::key::LockKey;
use crate::leadership::{Change, Revocation};
use crate::lock::heartbeat::server_timers;
use crate::lock::names::{self, Name};
use crate::lock::{schema, terms};
use crate::pool::registry;
use crate::sql::{self, SchemaSql};
use crate::wire::exec::Exec;
use crate::wire::session::Session;
use crate::{metrics, rt};

/// A candidate's role, as its handles see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    /// Waiting to be elected (or reconnecting).
    Candidate,
    /// Leading, in this term.
    Leader(u64),
    /// No longer a candidate.
    Ended(Revocation),
}

/// What a candidate's handles ask of its campaign.
pub(crate) enum Command {
    /// Hand the leadership over (if leading) and stay a candidate.
    Resign(oneshot::Sender<Result<(), Error>>),
    /// Leave the election; answered once the session is closed.
    Leave(oneshot::Sender<()>),
}

/// What a campaign and its handles share: the role, the changes, and the
/// futures running while this candidate leads.
pub(crate) struct Board {
    pub(crate) role: watch::Sender<Role>,
    changes: broadcast::Sender<Change>,
    /// Held while the role changes and the change is sent, and while a reader
    /// subscribes: a reader sees a change in its stream or in the role it
    /// starts from, never both.
    transition: std::sync::Mutex<()>,
    bodies: AtomicUsize,
    bodies_gone: Notify,
}

/// One future running while the candidate leads; counted until dropped.
pub(crate) struct Body<'a>(&'a Board);

impl Drop for Body<'_> {
    fn drop(&mut self) {
        if self.0.bodies.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.bodies_gone.notify_waiters();
        }
    }
}

impl Board {
    pub(crate) fn new() -> Arc<Board> {
        Arc::new(Board {
            role: watch::channel(Role::Candidate).0,
            changes: broadcast::channel(64).0,
            transition: std::sync::Mutex::new(()),
            bodies: AtomicUsize::new(0),
            bodies_gone: Notify::new(),
        })
    }

    /// The changes from now on, and the role they start from.
    pub(crate) fn subscribe(&self) -> (broadcast::Receiver<Change>, watch::Receiver<Role>) {
        let _t = self.transition();
        (self.changes.subscribe(), self.role.subscribe())
    }

    fn transition(&self) -> std::sync::MutexGuard<'_, ()> {
        self.transition.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a future that runs while leading, until the guard drops.
    pub(crate) fn body(&self) -> Body<'_> {
        self.bodies.fetch_add(1, Ordering::SeqCst);
        Body(self)
    }

    /// Waits (at most `bound`) until no future that ran while leading is left:
    /// a revoked leadership's work has stopped before its lock is given up.
    async fn bodies_dropped(&self, bound: Duration) {
        let all_gone = async {
            loop {
                let gone = self.bodies_gone.notified();
                let mut gone = std::pin::pin!(gone);
                gone.as_mut().enable();
                if self.bodies.load(Ordering::SeqCst) == 0 {
                    return;
                }
                gone.await;
            }
        };
        tokio::time::timeout(bound, all_gone).await.ok();
    }

    fn revoke(&self, c: &Campaign, term: u64, reason: Revocation, next: Role) {
        let _t = self.transition();
        // The role first: `run_while_leader` futures are dropped on it.
        self.role.send_replace(next);
        tracing::info!(target: "pglock", alias = %c.alias, leadership = %c.name, term, %reason,
            "leadership revoked");
        metrics::leadership(&c.alias, &c.name, false);
        self.changes.send(Change::Revoked { term, reason }).ok();
    }

    fn elect(&self, c: &Campaign, term: u64, pid: i32) {
        let _t = self.transition();
        // The event and the gauge before the role: whoever sees the role (and
        // returns from `elected()`) finds them recorded.
        tracing::info!(target: "pglock", alias = %c.alias, leadership = %c.name, term, pid,
            "elected leader");
        metrics::leadership(&c.alias, &c.name, true);
        self.role.send_replace(Role::Leader(term));
        self.changes.send(Change::Elected { term }).ok();
    }
}

/// What a campaign runs for.
pub(crate) struct Campaign {
    pub(crate) alias: Arc<str>,
    pub(crate) key: LockKey,
    pub(crate) name: Arc<str>,
    /// The name as a lock name, recorded so that the views show the leader's
    /// lock under it.
    pub(crate) label: Name,
    pub(crate) grace: Duration,
    pub(crate) renew: Duration,
}

/// Starts the campaign on pglock's runtime. It ends when the returned sender
/// (every clone of it) is dropped, on [`Command::Leave`], or on shutdown.
pub(crate) fn start(campaign: Campaign, board: Arc<Board>) -> mpsc::UnboundedSender<Command> {
    let (tx, rx) = mpsc::unbounded_channel();
    rt::spawn(run(campaign, board, rx));
    tx
}

/// How a session's part of the campaign ended.
enum Ended {
    /// The session is gone or unusable: open another. `led`: this session
    /// held a leadership.
    Lost { led: bool },
    /// Leave the election.
    Leave(Option<oneshot::Sender<()>>),
}

async fn run(c: Campaign, board: Arc<Board>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut backoff = Duration::from_millis(100);
    // Before opening a session again: none after a leadership ended (re-enter
    // at once), a growing pause after a failure that led nowhere (a server
    // that is down, a statement that keeps failing).
    let mut pause: Option<Duration> = None;
    loop {
        if let Some(d) = pause.take() {
            let sleep = rt::sleep(d);
            tokio::select! {
                () = sleep => {}
                cmd = commands.recv() => match cmd {
                    Some(Command::Resign(tx)) => { tx.send(Ok(())).ok(); pause = Some(d); continue; }
                    Some(Command::Leave(tx)) => return end(&board, Revocation::Left, Some(tx)),
                    None => return end(&board, Revocation::Left, None),
                },
            }
        }
        let opened = tokio::select! {
            s = open(&c) => s,
            cmd = commands.recv() => match cmd {
                Some(Command::Resign(tx)) => { tx.send(Ok(())).ok(); continue; }
                Some(Command::Leave(tx)) => return end(&board, Revocation::Left, Some(tx)),
                None => return end(&board, Revocation::Left, None),
            },
        };
        let (session, statements) = match opened {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::ShuttingDown => {
                return end(&board, Revocation::ShuttingDown, None)
            }
            Err(e) => {
                tracing::warn!(target: "pglock", alias = %c.alias, leadership = %c.name,
                    error = %e, retry_in = ?backoff, "leadership candidate could not connect");
                pause = Some(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        match campaign_on(&c, &session, statements, &board, &mut commands).await {
            Ended::Lost { led } => {
                session.close();
                if led {
                    backoff = Duration::from_millis(100);
                } else {
                    pause = Some(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            Ended::Leave(tx) => {
                session.cancel_running();
                session.close();
                session.checks.closed().await;
                return end(&board, Revocation::Left, tx);
            }
        }
    }
}

fn end(board: &Board, why: Revocation, done: Option<oneshot::Sender<()>>) {
    {
        let _t = board.transition();
        board.role.send_replace(Role::Ended(why));
    }
    if let Some(tx) = done {
        tx.send(()).ok();
    }
}

/// A dedicated session, pglock's schema ready on it, set up for the campaign.
async fn open(c: &Campaign) -> Result<(Session, &'static SchemaSql), Error> {
    let alias = registry::alias(&c.alias)?;
    let config = alias.config();
    let session = registry::dedicated_session(&c.alias).await?;
    if session.behind_pooler() {
        // A leader holds a session lock: refused behind a transaction pooler,
        // and behind a pooler of undeclared mode (the message says how to
        // declare it); the campaign warns and tries again.
        return Err(session.pooler_refusal().with_alias(&c.alias));
    }
    let exec = Exec::on(&session);
    let statements = schema::ready(
        &c.alias,
        config.schema_name(),
        config.pg_config().get_user(),
        exec,
    )
    .await?;
    match names::insert(exec, statements, c.key, &c.label).await {
        Ok(Some(theirs)) if *theirs != *c.name => {
            tracing::warn!(target: "pglock", alias = %c.alias, leadership = %c.name,
                recorded = %theirs, key = %c.key,
                "another name is recorded for this election's key: views show that one");
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(target: "pglock", error = %e, "election name not recorded"),
    }
    let timers = server_timers(config.answer_deadline());
    exec.query(sql::CANDIDATE_SETUP, &[(&timers, Type::TEXT)])
        .await?;
    Ok((session, statements))
}

/// The campaign on one session, until the session is lost or the candidate
/// leaves.
async fn campaign_on(
    c: &Campaign,
    session: &Session,
    statements: &'static SchemaSql,
    board: &Board,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Ended {
    let exec = Exec::on(session);
    let alias = registry::alias(&c.alias);
    let (every, deadline) = match &alias {
        Ok(a) => (
            a.heartbeat().unwrap_or(Duration::from_secs(1)),
            a.config().answer_deadline(),
        ),
        Err(_) => return Ended::Lost { led: false },
    };
    let mut led = false;
    let renew = format!("{}ms", c.renew.as_millis().max(1));
    loop {
        // Wait for the lock, in renewed waits; a command does not abandon a
        // wait in flight (its grant and term would go unseen).
        let term = loop {
            let elect = terms::elect(exec, statements, c.key, &c.name, &renew);
            let mut elect = std::pin::pin!(elect);
            let elected = loop {
                tokio::select! {
                    r = &mut elect => break r,
                    () = session.checks.closed() => return Ended::Lost { led },
                    cmd = commands.recv() => match cmd {
                        Some(Command::Resign(tx)) => { tx.send(Ok(())).ok(); }
                        Some(Command::Leave(tx)) => return Ended::Leave(Some(tx)),
                        None => return Ended::Leave(None),
                    },
                }
            };
            match elected {
                Ok(Some(term)) => break term,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(target: "pglock", alias = %c.alias, leadership = %c.name,
                        error = %e, "leadership election statement failed; reconnecting");
                    return Ended::Lost { led };
                }
            }
        };
        // The grace: a leader whose backend was just terminated learns of it
        // a few milliseconds after the server granted the lock here.
        let grace = rt::sleep(c.grace);
        let mut grace = std::pin::pin!(grace);
        let resigned = tokio::select! {
            () = &mut grace => None,
            () = session.checks.closed() => return Ended::Lost { led },
            cmd = commands.recv() => match cmd {
                Some(Command::Resign(tx)) => Some(tx),
                Some(Command::Leave(tx)) => return Ended::Leave(Some(tx)),
                None => return Ended::Leave(None),
            },
        };
        if let Some(tx) = resigned {
            // Never announced: give the lock up and wait again.
            let r = unlock_all(exec, deadline).await;
            let failed = r.is_err();
            tx.send(r).ok();
            if failed {
                return Ended::Lost { led };
            }
            continue;
        }
        board.elect(c, term, session.pid);
        led = true;

        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = session.checks.closed() => {
                    let why = if registry::is_shutting_down() {
                        Revocation::ShuttingDown
                    } else {
                        Revocation::SessionEnded
                    };
                    board.revoke(c, term, why, Role::Candidate);
                    return Ended::Lost { led };
                }
                _ = tick.tick() => {
                    let ping = exec.query(sql::LEADER_PING, &[]);
                    match tokio::time::timeout(deadline, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            let why = if e.is_connection_lost() {
                                Revocation::SessionEnded
                            } else {
                                Revocation::Failed(e.to_string())
                            };
                            board.revoke(c, term, why, Role::Candidate);
                            return Ended::Lost { led };
                        }
                        Err(_) => {
                            board.revoke(c, term, Revocation::NoAnswer(deadline), Role::Candidate);
                            return Ended::Lost { led };
                        }
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Resign(tx)) => {
                        board.revoke(c, term, Revocation::Resigned, Role::Candidate);
                        board.bodies_dropped(c.grace).await;
                        let r = unlock_all(exec, deadline).await;
                        let failed = r.is_err();
                        tx.send(r).ok();
                        if failed {
                            return Ended::Lost { led };
                        }
                        break;
                    }
                    Some(Command::Leave(tx)) => {
                        board.revoke(c, term, Revocation::Left, Role::Candidate);
                        board.bodies_dropped(c.grace).await;
                        return Ended::Leave(Some(tx));
                    }
                    None => {
                        board.revoke(c, term, Revocation::Left, Role::Candidate);
                        board.bodies_dropped(c.grace).await;
                        return Ended::Leave(None);
                    }
                },
            }
        }
    }
}

/// Gives up the leadership's lock (held once or twice), within `deadline`.
async fn unlock_all(exec: Exec<'_>, deadline: Duration) -> Result<(), Error> {
    match tokio::time::timeout(deadline, exec.query(sql::UNLOCK_ALL, &[])).await {
        Ok(r) => r.map(drop),
        Err(_) => Err(Error::new(
            ErrorKind::ConnectionLost,
            format!(
                "the server did not answer the resignation within {}: the session is closed \
                 instead, which releases the lock",
                humantime::format_duration(deadline)
            ),
        )),
    }
}
