//! Leader election, the public face: the [`Election`] builder, the [`Leader`]
//! handle of a candidate, and its [`Changes`].

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::error::{Error, ErrorKind};
use crate::key::{KeyHash, LockKey, ToLockKey};
use crate::leadership::{Change, Revocation};
use crate::lock::candidate::{self, Board, Campaign, Command, Role};
use crate::lock::{names, terms};
use crate::pool::registry::{self, DEFAULT_ALIAS};
use crate::rt;
use crate::term::Term;

/// The default [`Election::grace`].
pub const DEFAULT_GRACE: Duration = Duration::from_millis(250);

/// The default [`Election::renew_wait`].
pub const DEFAULT_RENEW_WAIT: Duration = Duration::from_secs(60);

/// A leader election to join: one leader at a time among every process that
/// joins it with the same name, on the same database.
///
/// ```no_run
/// # async fn run_schedule(term: u64) {}
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let candidate = pglock_runtime::leader("billing::scheduler").join()?;
/// // Runs the schedule only while this process leads; stops it at once if the
/// // leadership is lost, and starts it again when elected again.
/// candidate.run_while_leader(|term| run_schedule(term)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "an Election does nothing until `join()` is called"]
pub struct Election {
    name: Cow<'static, str>,
    key: LockKey,
    hash: KeyHash,
    alias: Cow<'static, str>,
    grace: Duration,
    renew: Duration,
}

impl fmt::Debug for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("alias", &self.alias)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

/// The election called `name`, on the `"default"` alias. The name is hashed
/// into an advisory-lock key as [`advisory`](crate::advisory()) hashes a string
/// ([`KeyHash::DjangoPglock`]), so `pglock locks` shows the leader's lock
/// under its name; see [`Election::hash`] for the other algorithms.
///
/// ```
/// let election = pglock_runtime::leader("scheduler");
/// assert_eq!(election.key(), pglock_runtime::advisory("scheduler").key());
/// ```
pub fn leader(name: impl Into<Cow<'static, str>>) -> Election {
    let name = name.into();
    let key = name.as_ref().to_named_key(KeyHash::default()).0;
    Election {
        name,
        key,
        hash: KeyHash::default(),
        alias: Cow::Borrowed(DEFAULT_ALIAS),
        grace: DEFAULT_GRACE,
        renew: DEFAULT_RENEW_WAIT,
    }
}

impl Election {
    /// The advisory-lock key the leader holds.
    pub fn key(&self) -> LockKey {
        self.key
    }

    /// Hashes the name with `hash` instead of [`KeyHash::DjangoPglock`].
    ///
    /// ```
    /// use pglock_runtime::KeyHash;
    ///
    /// let election = pglock_runtime::leader("scheduler").hash(KeyHash::Sqlx);
    /// assert_eq!(election.key(), pglock_runtime::advisory_with("scheduler", KeyHash::Sqlx).key());
    /// ```
    pub fn hash(mut self, hash: KeyHash) -> Election {
        self.key = self.name.as_ref().to_named_key(hash).0;
        self.hash = hash;
        self
    }

    /// Uses a registered database alias instead of `"default"`.
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> Election {
        self.alias = alias.into();
        self
    }

    /// How long after the server grants the leadership's lock the candidate
    /// announces itself leader ([`Change::Elected`], [`Leader::is_leader`],
    /// `run_while_leader`). Default [`DEFAULT_GRACE`] (250 ms).
    ///
    /// When a leader's backend is terminated, the server grants the next
    /// candidate at once, and the old leader's process learns of it a few
    /// milliseconds later (its socket brings the news). The grace covers that
    /// notice, so that the old leader has stopped its work before the new one
    /// starts: leaderships seen from outside do not overlap. What no grace can
    /// cover — a leader that stopped talking to the server but keeps working —
    /// the term covers: pass it as a fencing token with every write made
    /// outside the leader's own session ([`Leader::term`]).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let election = pglock_runtime::leader("scheduler").grace(Duration::from_millis(500));
    /// ```
    pub fn grace(mut self, grace: Duration) -> Election {
        self.grace = grace.min(Duration::from_secs(3600));
        self
    }

    /// How long one wait statement of a candidate lasts before it is issued
    /// again (as a `lock_timeout` on that statement). Default
    /// [`DEFAULT_RENEW_WAIT`] (60 s); kept between 10 ms and a day.
    ///
    /// A statement that waits holds a snapshot, and while it does `VACUUM`
    /// cannot clean up rows that changed since, anywhere in the database.
    /// Renewing the wait bounds that to this period. A renewal does not delay
    /// a failover: a waiting candidate is granted the lock the moment it is
    /// free, and one between two waits takes it with the next statement.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let election = pglock_runtime::leader("scheduler").renew_wait(Duration::from_secs(30));
    /// ```
    pub fn renew_wait(mut self, every: Duration) -> Election {
        self.renew = every.clamp(Duration::from_millis(10), Duration::from_secs(86_400));
        self
    }

    /// Joins the election: starts a candidate that waits inside the server, on a
    /// session of its own (one connection per candidate, outside the alias's
    /// pool), until it is elected. Returns at once; works from async and from
    /// plain threads (the candidate runs on pglock's own runtime).
    ///
    /// The candidate stays in the election, re-entering it by itself after a
    /// lost leadership or connection, until [`Leader::leave`] or until every
    /// handle to it is dropped.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Configuration`] for an unknown alias;
    /// [`ErrorKind::Pooler`] for an alias declared behind a transaction pooler
    /// (a leader holds a session lock); [`ErrorKind::ShuttingDown`] after
    /// [`shutdown`](crate::shutdown).
    pub fn join(self) -> Result<Leader, Error> {
        registry::refuse_if_shutting_down(&self.alias)?;
        let alias = registry::alias(&self.alias)?;
        if alias.config().declares_transaction_pooling() {
            return Err(Error::pooler().with_alias(&self.alias));
        }
        let name: Arc<str> = Arc::from(self.name.as_ref());
        let label = names::intern(self.key, &name, self.hash);
        if let Some(other) = &label.clash {
            return Err(names::clash(self.key, &name, other));
        }
        let board = Board::new();
        let commands = candidate::start(
            Campaign {
                alias: alias.name.clone(),
                key: self.key,
                name: name.clone(),
                label,
                grace: self.grace,
                renew: self.renew,
            },
            board.clone(),
        );
        Ok(Leader {
            inner: Arc::new(Inner {
                board,
                commands,
                name,
                alias: self.alias,
                key: self.key,
            }),
        })
    }
}

/// A candidate in a leader election (from [`Election::join`]): whether it
/// leads, in which term, and the ways to act only while it does. Cheap to
/// clone; the candidate leaves the election when the last clone is dropped.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let candidate = pglock_runtime::leader("scheduler").join()?;
/// let term = candidate.elected().await?;
/// println!("leading in term {term}");
/// assert!(candidate.is_leader());
/// candidate.resign().await?; // the next candidate is elected at once
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Leader {
    inner: Arc<Inner>,
}

struct Inner {
    board: Arc<Board>,
    /// Dropped with the last handle: the campaign then leaves the election.
    commands: mpsc::UnboundedSender<Command>,
    name: Arc<str>,
    alias: Cow<'static, str>,
    key: LockKey,
}

impl fmt::Debug for Leader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leader")
            .field("name", &self.inner.name)
            .field("alias", &self.inner.alias)
            .field("role", &*self.inner.board.role.borrow())
            .finish()
    }
}

impl Leader {
    /// The election's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The advisory-lock key the leader holds.
    pub fn key(&self) -> LockKey {
        self.inner.key
    }

    /// Whether this candidate leads now (announced, a grace after the grant).
    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }

    /// The term this candidate leads in, if it leads: its fencing token.
    pub fn term(&self) -> Option<u64> {
        match *self.inner.board.role.borrow() {
            Role::Leader(term) => Some(term),
            _ => None,
        }
    }

    /// The changes of this candidate's role from now on.
    pub fn changes(&self) -> Changes {
        let (rx, role) = self.inner.board.subscribe();
        Changes { rx, role }
    }

    /// Waits until this candidate leads, and returns its term (at once if it
    /// leads already).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ShuttingDown`] after [`shutdown`](crate::shutdown);
    /// [`ErrorKind::Usage`] once the candidate [left](Leader::leave).
    pub async fn elected(&self) -> Result<u64, Error> {
        let mut role = self.inner.board.role.subscribe();
        self.wait_elected(&mut role).await
    }

    async fn wait_elected(&self, role: &mut watch::Receiver<Role>) -> Result<u64, Error> {
        let now = role
            .wait_for(|r| !matches!(r, Role::Candidate))
            .await
            .map(|r| r.clone());
        match now {
            Ok(Role::Leader(term)) => Ok(term),
            Ok(Role::Ended(why)) => Err(self.ended(&why)),
            Ok(Role::Candidate) | Err(_) => Err(self.ended(&Revocation::Left)),
        }
    }

    fn ended(&self, why: &Revocation) -> Error {
        let e = match why {
            Revocation::ShuttingDown => Error::new(
                ErrorKind::ShuttingDown,
                "`pglock_runtime::shutdown` was called: the candidate left the election",
            ),
            _ => Error::usage("this candidate left the election (`Leader::leave`)"),
        };
        e.with_key(self.inner.key).with_alias(&self.inner.alias)
    }

    /// [`elected`](Leader::elected) from synchronous code: waits at most
    /// `timeout` (`None`: without limit); `Ok(None)` when it ran out.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), pglock_runtime::Error> {
    /// use std::time::Duration;
    ///
    /// let candidate = pglock_runtime::leader("scheduler").join()?;
    /// if let Some(term) = candidate.elected_blocking(Some(Duration::from_secs(5)))? {
    ///     println!("leading in term {term}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`elected`](Leader::elected).
    pub fn elected_blocking(&self, timeout: Option<Duration>) -> Result<Option<u64>, Error> {
        rt::block_on(async {
            match timeout {
                None => self.elected().await.map(Some),
                Some(d) => match rt::timeout(d, self.elected()).await {
                    Ok(r) => r.map(Some),
                    Err(_) => Ok(None),
                },
            }
        })
    }

    /// Runs `work(term)` while this candidate leads: waits to be elected,
    /// starts it, and drops it (cancelling it at its next `.await`) the moment
    /// the leadership is revoked — before another candidate can be announced,
    /// wherever the server could tell (see [`Election::grace`]). Then waits to
    /// be elected again and starts a new `work` with the new term. Returns
    /// `work`'s output once a run completes while still leading.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pglock_runtime::Error> {
    /// let candidate = pglock_runtime::leader("scheduler").join()?;
    /// candidate
    ///     .run_while_leader(|term| async move {
    ///         let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    ///         loop {
    ///             tick.tick().await;
    ///             println!("term {term}: running the schedule");
    ///         }
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`elected`](Leader::elected), when the candidacy ends.
    pub async fn run_while_leader<F, Fut>(&self, mut work: F) -> Result<Fut::Output, Error>
    where
        F: FnMut(u64) -> Fut,
        Fut: Future,
    {
        let mut role = self.inner.board.role.subscribe();
        loop {
            let term = self.wait_elected(&mut role).await?;
            // Counted before the role is looked at again: a resignation waits
            // for this run to be dropped before it gives the lock up.
            let _body = self.inner.board.body();
            if *role.borrow_and_update() != Role::Leader(term) {
                continue;
            }
            let run = work(term);
            tokio::select! {
                biased;
                _ = role.wait_for(|r| *r != Role::Leader(term)) => {}
                out = run => return Ok(out),
            }
        }
    }

    /// Hands the leadership over at once, if this candidate leads: the
    /// leadership is revoked ([`Revocation::Resigned`]), `run_while_leader`
    /// work is dropped (waited for up to the grace), and the lock is released,
    /// so that the next waiting candidate is elected. This candidate stays in
    /// the election, behind the others. Does nothing if it does not lead.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ConnectionLost`] if the server did not answer (the
    /// session is then closed, which releases the lock as well); as
    /// [`elected`](Leader::elected) once the candidacy ended.
    pub async fn resign(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Resign(tx)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// [`resign`](Leader::resign) from synchronous code.
    ///
    /// # Errors
    ///
    /// As [`resign`](Leader::resign).
    pub fn resign_blocking(&self) -> Result<(), Error> {
        rt::block_on(self.resign())
    }

    /// Leaves the election, for every clone of this handle: a leader is
    /// revoked ([`Revocation::Left`]) and its work dropped first, and the
    /// candidate's session is closed, which releases the lock. Returns once it
    /// is closed. Dropping every handle leaves too, in the background.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Leave(tx)).is_ok() {
            rx.await.ok();
        }
    }

    /// [`leave`](Leader::leave) from synchronous code.
    pub fn leave_blocking(&self) {
        rt::block_on(self.leave());
    }

    /// Who leads this election now, as the server sees it, from any process:
    /// the last term granted, if its session still holds the lock. (During a
    /// candidate's grace this is already the new leader.)
    ///
    /// # Errors
    ///
    /// Checkout and database errors ([`ErrorKind::Permission`] when the role
    /// may not read pglock's schema).
    pub async fn current_leader(&self) -> Result<Option<Term>, Error> {
        let all = terms::on_record(&self.inner.alias, Some(&self.inner.name)).await?;
        Ok(all.into_iter().find(|t| t.holding))
    }

    /// [`current_leader`](Leader::current_leader) from synchronous code.
    ///
    /// # Errors
    ///
    /// As [`current_leader`](Leader::current_leader).
    pub fn current_leader_blocking(&self) -> Result<Option<Term>, Error> {
        rt::block_on(self.current_leader())
    }
}

/// The changes of a candidate's role ([`Leader::changes`]), in order. A reader
/// that falls more than 64 changes behind skips the oldest.
pub struct Changes {
    rx: broadcast::Receiver<Change>,
    role: watch::Receiver<Role>,
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes").finish_non_exhaustive()
    }
}

impl Changes {
    /// The next change; `None` once the candidate has left the election and
    /// every change before has been read.
    pub async fn next(&mut self) -> Option<Change> {
        loop {
            tokio::select! {
                biased;
                r = self.rx.recv() => match r {
                    Ok(change) => return Some(change),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                _ = self.role.wait_for(|r| matches!(r, Role::Ended(_))) => {
                    return self.rx.try_recv().ok();
                }
            }
        }
    }

    /// [`next`](Changes::next) from synchronous code.
    pub fn next_blocking(&mut self) -> Option<Change> {
        rt::block_on(self.next())
    }
}
