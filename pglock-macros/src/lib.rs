//! Attribute macros of pglock: `#[advisory_lock]`, `#[lock_timeout]` and
//! `#[prioritize]`. Depend on [`pglock-runtime`], which re-exports them (with these
//! docs); this crate is an implementation detail, pinned by the runtime to the
//! exact same version.
//!
//! Each attribute parses its arguments (`attr.rs`), checks them together with the
//! other pglock attributes of the function (`valid.rs`), and expands (`expand.rs`)
//! to a `Plan` value handed to one function of `pglock_runtime::__private`.
//!
//! [`pglock-runtime`]: https://docs.rs/pglock-runtime

mod attr;
mod ctxt;
mod duration;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Runs the function while holding a PostgreSQL advisory lock.
///
/// The lock is taken on the function's *scope connection* (checked out of the
/// alias's pool when the call starts, returned clean when it ends), which
/// `pglock_runtime::connection()` hands out inside the body. It is released on every
/// exit path: success, error, `?`, panic, and the future being dropped.
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `key = <expr>` | any expression convertible to a lock key ([`ToLockKey`]: integers, `(i32, i32)`, strings, `("invoice", id)`, a `LockKey`); evaluated per call, before the body, and may use the parameters (`self` too) | `concat!(module_path!(), "::", <fn name>)`, hashed |
/// | `shared` | shared mode: shared holders coexist, an exclusive one excludes them | exclusive |
/// | `xact` | transaction level: the body runs in a transaction on the scope connection, committed when it succeeds, rolled back when it returns an error or panics | session level |
/// | `timeout = 0` | do not wait (`pg_try_advisory_*`) | the session's `lock_timeout` (no limit, unless a stacked `#[lock_timeout]` gives one) |
/// | `timeout = 1.5` / `"250ms"` / `"2s"` / `"1m30s"` | wait at most this long, measured by the server; then the call fails (or skips) naming the holders | |
/// | `timeout = none` | wait without limit, whatever `lock_timeout` says | |
/// | `on_fail = raise` | the function returns the error: it must return `Result<_, E>` with `E: From<pglock_runtime::Error>` | `raise` |
/// | `on_fail = skip` | the body does not run; the function returns its type's [`Skipped`] value (`()`, `false`, `None`, `Ok(None)`, `Ok(())`, …); a `tracing` event says why (busy: debug, errors: warn) | |
/// | `on_error = raise` | with `on_fail = skip`: only a busy lock (or a slot that already ran) skips; every other failure — configuration, connection, permission — is returned (the function returns `Result<_, E>`) | `skip`: every failure skips, and those other than a busy lock are `error`-level events (target `pglock`) |
/// | `on_lost = cancel` | drop the body when the lock is found lost while it runs (`async fn` only); the call fails with `ErrorKind::LockLost` | `report`: keep running, log at once, fail at the end |
/// | `once_per = "1h"` | a scheduled job: at most one run per slot of this length across every instance, slots taken from the **database's** clock (see [Scheduled jobs](#scheduled-jobs)); not with `shared` | every call runs |
/// | `slot = <expr>` | a scheduled job whose slot the call names: any expression convertible to a slot ([`ToSlot`]: a planned fire time as `SystemTime`, a date string, an integer), evaluated per call | |
/// | `retry` | with `once_per` / `slot`: a run that failed (returned `Err`, or panicked) does not use up its slot, so another call may run it again | a failed run counts as the slot's run |
/// | `fenced` | take a fencing token with the lock: the lock name's next term, strictly greater than every earlier holder's, read in the body with `pglock_runtime::fencing_token()` (pass it with writes made outside the lock's session); not with `shared` | no token |
/// | `using = "alias"` | registry alias | `"default"` |
/// | `hash = django_pglock \| django_pglocks \| django_pglocks_v1 \| postgres_lock \| sqlx` | how string keys are hashed, to exclude Python processes (or sqlx) that name the same lock | `django_pglock` |
/// | `crate = "path"` | path of a renamed `pglock-runtime` dependency | `pglock_runtime` |
///
/// Durations are checked at compile time: a number of seconds (`5`, `0.25`), a
/// string with units (`"250ms"`, `"2s"`, `"1m30s"`; `ms`, `s`, `m`, `h`, also `us`,
/// `ns`, `d`), or `none`. Mistakes in arguments are compile errors at the argument,
/// all reported in one build, and the function is still emitted, so the rest of the
/// crate keeps type-checking while you fix them.
///
/// [`ToLockKey`]: https://docs.rs/pglock-runtime/latest/pglock_runtime/trait.ToLockKey.html
/// [`Skipped`]: https://docs.rs/pglock-runtime/latest/pglock_runtime/trait.Skipped.html
/// [`ToSlot`]: https://docs.rs/pglock-runtime/latest/pglock_runtime/trait.ToSlot.html
///
/// ```no_run
/// use pglock_runtime::advisory_lock;
///
/// // Runs once per tick across the fleet; the other instances skip.
/// #[advisory_lock(timeout = 0, on_fail = skip)]
/// async fn send_reminders() {
///     // ...
/// }
///
/// #[advisory_lock(key = ("invoice", invoice_id), timeout = "2s")]
/// async fn send_invoice(invoice_id: i64) -> Result<(), pglock_runtime::Error> {
///     let db = pglock_runtime::connection().await?; // the session holding the lock
///     db.execute("UPDATE invoices SET sent = true WHERE id = $1", &[&invoice_id]).await?;
///     Ok(())
/// }
/// ```
///
/// Equivalent code without the attribute (for `send_invoice`):
///
/// ```no_run
/// # async fn f(invoice_id: i64) -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// pglock_runtime::advisory(("invoice", invoice_id))
///     .timeout(Duration::from_secs(2))
///     .run(async {
///         let db = pglock_runtime::connection().await?;
///         db.execute("UPDATE invoices SET sent = true WHERE id = $1", &[&invoice_id]).await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await?
/// # }
/// ```
///
/// # Return types
///
/// With `on_fail = raise` (the default) a failure to acquire (busy after the
/// timeout, deadlock, cancelled, connection or configuration errors, each its own
/// `ErrorKind`) is returned as `Err(E::from(error))`. A function returning
/// anything but such a `Result` is a compile error at its return type, which says
/// to use `on_fail = skip`:
///
/// ```compile_fail,E0277
/// #[pglock_runtime::advisory_lock]
/// async fn count() -> u32 { // error: `on_fail = raise` needs a function returning `Result<_, E>` …
///     1
/// }
/// ```
///
/// With `on_fail = skip`, the return type needs a "skipped" value: implement
/// [`Skipped`] for your own types; a type without one is a compile error that names
/// the trait. An `Err` returned by the body counts as a failure (an `xact`
/// transaction is rolled back); any other value as a success.
///
/// # Scheduled jobs
///
/// A lock alone prevents *overlap*, not a *second run of the same tick*: a job that
/// takes 5 ms, on instances whose schedules fire 100–300 ms apart, is free again
/// when the next instance's tick fires, and runs there too. `once_per = "1m"`
/// records each run in pglock's own schema (created on first use; `pglock
/// schema` prints its SQL) under the slot the *server's* clock puts the call in
/// (`date_bin` of the statement's start), so the other instances of that tick find
/// the slot taken and skip, whatever their own clocks say. The lock and the claim
/// are one statement: skipping costs no round trip more than a busy lock, and a
/// run costs one more (recording how it ended).
///
/// ```no_run
/// use pglock_runtime::advisory_lock;
///
/// // Every instance ticks each minute; one run per minute across the fleet.
/// #[advisory_lock(timeout = 0, on_fail = skip, once_per = "1m")]
/// async fn send_reminders() {
///     // ...
/// }
///
/// // Ticks planned on the hour but firing either side of it (02:59:59.8 on one
/// // instance, 03:00:00.2 on another) would land in two `once_per = "1h"` slots:
/// // name the slot by the planned time instead.
/// #[advisory_lock(timeout = 0, on_fail = skip, slot = planned_at)]
/// async fn nightly(planned_at: std::time::SystemTime) {
///     // ...
/// }
/// ```
///
/// A call whose slot already ran does not run its body: with `on_fail = skip` it
/// returns the skipped value (a debug event names the instance that ran it and
/// when), with `raise` it returns `ErrorKind::AlreadyRan`. A run that fails or
/// panics still counts as its slot's run unless `retry` is given. `pglock runs`
/// lists recent runs and the slots that ran nowhere.
///
/// # Keys
///
/// The default key names the module and the function, so two functions with the
/// same name in one module — methods of two types in the same module, say — share
/// a lock. Give them a `key` (for example `key = ("Invoices::send", self.id)`).
///
/// # Plain functions
///
/// A plain (non-`async`) function works too, from any thread, inside a tokio
/// runtime or not; no closure is put around its body. Its `return` statements
/// commit an `xact` transaction like reaching the end of the body does; leaving
/// through `?` or a panic rolls it back (and releases a session lock), whatever the
/// value, so prefer an explicit `return` for an early *successful* exit.
///
/// # Stacking
///
/// With `#[lock_timeout]` and `#[prioritize]` on the same function, in any order
/// and mixed with other attributes (`#[tokio::test]`, `#[tracing::instrument]`), all
/// three act on the one scope connection, and both of those also cover the
/// acquisition: the attribute that expands first collects the others and generates
/// once. Each may appear once; stacked `using` and `crate` must agree.
#[proc_macro_attribute]
pub fn advisory_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::advisory_lock(args.into(), item.into()).into()
}

/// Sets PostgreSQL's `lock_timeout` on the scope connection while the function
/// runs, and restores the previous value on every exit path.
///
/// | argument | meaning | default |
/// |---|---|---|
/// | first argument | the limit: seconds (`5`, `0.5`), a string (`"250ms"`, `"5s"`, `"1m"`), or `none` for no limit; zero is a compile error (PostgreSQL reads 0 as "no limit": write `none`) | required |
/// | `using = "alias"` | registry alias | `"default"` |
/// | `crate = "path"` | path of a renamed `pglock-runtime` dependency | `pglock_runtime` |
///
/// Every lock wait of the body's statements on the scope connection gives up after
/// the limit with SQLSTATE 55P03 (`ErrorKind::LockTimeout`). Inside a transaction
/// it behaves like `SET LOCAL`; nested scopes restore in order. The function must
/// return `Result<_, E>` with `E: From<pglock_runtime::Error>` (the attribute's own
/// errors go there). Stacked with `#[advisory_lock]` (in any order), the limit also
/// bounds that lock's wait unless it has a `timeout` of its own; stacked with
/// `#[prioritize]`, a limit shorter than its `interval` is a compile error (the body
/// would give up before the watchdog acts).
///
/// A statement that gives up says what it waited for, which PostgreSQL's own error
/// does not: converted into `pglock_runtime::Error` inside the body (by `?`, or
/// `pglock_runtime::Error::from`), it names the relation (or the row's relation) and
/// the sessions that blocked it (`Error::relation`, `Error::holders`; `lock timeout
/// (database alias `default`): canceling statement due to lock timeout, waiting for
/// AccessShareLock on relation `public.orders`; held by pid 4242 …`). pglock sees the
/// wait while it lasts: see `LockTimeout` in `pglock-runtime`.
///
/// ```no_run
/// use pglock_runtime::{advisory_lock, lock_timeout};
///
/// #[lock_timeout("5s")]
/// #[advisory_lock]
/// async fn migrate() -> Result<(), pglock_runtime::Error> {
///     let db = pglock_runtime::connection().await?;
///     db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///     Ok(())
/// }
/// ```
///
/// Equivalent code without the attribute (for the `#[lock_timeout]` part):
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// pglock_runtime::lock_timeout(Duration::from_secs(5))
///     .scope(async {
///         let db = pglock_runtime::connection().await?;
///         db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await?
/// # }
/// ```
///
/// ```compile_fail
/// #[pglock_runtime::lock_timeout(0)] // error: `#[lock_timeout]` cannot be zero …
/// async fn migrate() -> Result<(), pglock_runtime::Error> {
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn lock_timeout(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::lock_timeout(args.into(), item.into()).into()
}

/// Keeps the function from waiting behind other sessions: while it runs, a watchdog
/// on a separate connection terminates (or cancels) the sessions blocking its scope
/// connection, advisory-lock waits included.
///
/// | argument | meaning | default |
/// |---|---|---|
/// | `interval = "1s"` | how often the watchdog looks | 1 s |
/// | `periodic = false` | act once, one interval after the start | `true` |
/// | `action = terminate \| cancel` | `pg_terminate_backend` or `pg_cancel_backend` | `terminate` |
/// | `min_blocker_age = "5s"` | spare blockers whose transaction (or query) is younger | none spared |
/// | `max_kills = 3` | at most this many per tick, oldest first | no cap |
/// | `dry_run` | report, signal nobody | off |
/// | `signal_superusers` | signal superusers' sessions too | spared |
/// | `any_database` | signal blockers connected to other databases too | this database only |
/// | `timeout = "10s"` | a backup `lock_timeout` for the body; shorter than `interval` is a compile error | none |
/// | `using = "alias"` | registry alias (the watchdog connects through it too) | `"default"` |
/// | `crate = "path"` | path of a renamed `pglock-runtime` dependency | `pglock_runtime` |
///
/// The watchdog runs on a session of its own (opened before the body), never
/// signals sessions pglock has open in this process or non-client backends, and
/// only direct blockers. Every action is a `tracing` event (target
/// `pglock::prioritize`); what keeps it from acting (a role that cannot see or
/// signal the blockers) is an `error` event, and never replaces the function's
/// own result. The function must return `Result<_, E>` with
/// `E: From<pglock_runtime::Error>`. Stacked with `#[advisory_lock]` (in any
/// order), the watchdog also protects the wait for that lock.
///
/// ```no_run
/// use pglock_runtime::{lock_timeout, prioritize};
///
/// #[prioritize(interval = "1s", min_blocker_age = "5s")]
/// #[lock_timeout("30s")]
/// async fn migrate() -> Result<(), pglock_runtime::Error> {
///     let db = pglock_runtime::connection().await?;
///     db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///     Ok(())
/// }
/// ```
///
/// Equivalent code without the attribute (for the `#[prioritize]` part):
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// let done = pglock_runtime::Prioritize::new()
///     .interval(Duration::from_secs(1))
///     .min_blocker_age(Duration::from_secs(5))
///     .run(async {
///         let db = pglock_runtime::connection().await?;
///         db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await?;
/// done.output
/// # }
/// ```
///
/// ```compile_fail
/// // error: `timeout` (500ms) is shorter than `interval` (2s) …
/// #[pglock_runtime::prioritize(interval = "2s", timeout = "500ms")]
/// async fn migrate() -> Result<(), pglock_runtime::Error> {
///     Ok(())
/// }
/// ```
#[proc_macro_attribute]
pub fn prioritize(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::prioritize(args.into(), item.into()).into()
}
