//! Semantic checks over all pglock attributes of one function, producing what
//! the expansion needs. Every problem is reported, each at the argument to
//! change (the later one when two arguments conflict).

use syn::{Expr, ReturnType, Signature, Type};

use crate::attr::{Action, Args, At, Kind, OnFail, OnLost};
use crate::ctxt::Ctxt;
use crate::duration::DurationArg;

/// What the expansion needs, every argument checked.
pub(crate) struct Checked {
    pub(crate) krate: syn::Path,
    pub(crate) alias: Option<String>,
    pub(crate) advisory: Option<Advisory>,
    pub(crate) on_fail: OnFail,
    /// `on_fail = skip, on_error = raise`: only a busy lock (or a slot that
    /// already ran) skips; other errors are returned.
    pub(crate) raise_errors: bool,
    pub(crate) lock_timeout: Option<DurationArg>,
    pub(crate) prioritize: Option<Prioritize>,
}

pub(crate) struct Advisory {
    pub(crate) key: Option<Expr>,
    pub(crate) hash: &'static str,
    pub(crate) shared: bool,
    pub(crate) xact: bool,
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) cancel_on_lost: bool,
    pub(crate) slot: Option<Slot>,
    pub(crate) retry: bool,
    pub(crate) fenced: bool,
}

/// How a scheduled job's slot is told: `once_per` (on the database's clock) or
/// `slot = <expr>` (given per call).
pub(crate) enum Slot {
    /// Nanoseconds, a whole number of microseconds.
    Every(u64),
    Expr(Expr),
}

pub(crate) struct Prioritize {
    pub(crate) interval: Option<u64>,
    pub(crate) periodic: Option<bool>,
    pub(crate) cancel: bool,
    pub(crate) min_blocker_age: Option<u64>,
    pub(crate) max_kills: Option<u32>,
    pub(crate) dry_run: bool,
    pub(crate) signal_superusers: bool,
    pub(crate) any_database: bool,
    pub(crate) timeout: Option<DurationArg>,
}

/// The default `interval` of `#[prioritize]`, in nanoseconds (the runtime's too).
const DEFAULT_INTERVAL: u64 = 1_000_000_000;

fn describe(nanos: u64) -> String {
    match nanos {
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

/// PostgreSQL's largest `lock_timeout`: `i32::MAX` milliseconds.
const MAX_LOCK_TIMEOUT: u64 = i32::MAX as u64 * 1_000_000;

/// A literal lock wait limit above what PostgreSQL accepts.
fn check_lock_limit(cx: &Ctxt, limit: Option<&At<DurationArg>>, what: &str) {
    if let Some(At {
        value: DurationArg::Nanos(n),
        span,
    }) = limit
    {
        if *n > MAX_LOCK_TIMEOUT {
            cx.error_at(
                *span,
                format!(
                    "{what} is longer than PostgreSQL's largest `lock_timeout` (2147483647ms, about \
                     24.8 days): write `none` for no limit"
                ),
            );
        }
    }
}

/// PostgreSQL's `interval` has microsecond resolution; a slot shorter than this is
/// a typo, not a schedule.
const MIN_SLOT: u64 = 1_000_000;

/// `once_per`, `slot` and `retry`: one way of naming the slot, a real length, and
/// an exclusive lock (a slot has one run).
fn check_slot(cx: &Ctxt, args: &Args) -> Option<Slot> {
    let every = match &args.once_per {
        Some(At {
            value: DurationArg::None,
            span,
        }) => {
            cx.error_at(
                *span,
                "`once_per` cannot be `none`: give the slot length, as in `once_per = \"1h\"`, or \
                 leave it out to run on every call",
            );
            None
        }
        Some(At {
            value: DurationArg::Nanos(n),
            span,
        }) if *n < MIN_SLOT || n % 1_000 != 0 => {
            cx.error_at(
                *span,
                format!(
                    "`once_per` must be at least 1ms and a whole number of microseconds (the \
                     resolution of PostgreSQL's clock), not {}",
                    describe(*n)
                ),
            );
            None
        }
        Some(At {
            value: DurationArg::Nanos(n),
            ..
        }) => Some(*n),
        None => None,
    };
    if args.once_per.is_some() && args.slot.is_some() {
        // Reported where the later of the two was parsed (`attr.rs`).
        return None;
    }
    let named = args
        .once_per
        .as_ref()
        .map(|o| o.span)
        .or(args.slot.as_ref().map(|s| s.span));
    if let (Some(_), Some(shared)) = (named, &args.shared) {
        if shared.value {
            cx.error_at(
                shared.span,
                "`shared` cannot be used with `once_per` or `slot`: a slot has one run, and shared \
                 holders run together; remove `shared`",
            );
        }
    }
    if let (Some(fenced), Some(shared)) = (&args.fenced, &args.shared) {
        if fenced.value && shared.value {
            cx.error_at(
                fenced.span,
                "`fenced` cannot be used with `shared`: a fencing token orders holders one after \
                 another, and shared holders hold together; remove one of them",
            );
        }
    }
    if let (None, Some(r)) = (named, &args.retry) {
        cx.error_at(
            r.span,
            "`retry` says whether a failed run of a slot may be run again, so it needs `once_per = \
             \"…\"` or `slot = <expr>`",
        );
    }
    match (every, &args.slot) {
        (Some(n), _) => Some(Slot::Every(n)),
        (None, Some(s)) => Some(Slot::Expr(s.value.clone())),
        (None, None) => None,
    }
}

/// Whether the function returns `()`.
pub(crate) fn returns_unit(sig: &Signature) -> bool {
    match &sig.output {
        ReturnType::Default => true,
        ReturnType::Type(_, t) => matches!(&**t, Type::Tuple(t) if t.elems.is_empty()),
    }
}

/// The one value several stacked attributes give for `using` or `crate`: they act
/// on one connection through one runtime, so they must agree. The conflict is
/// reported at the later one.
fn agree<'a, T: PartialEq>(
    cx: &Ctxt,
    args: &'a Args,
    get: impl Fn(Kind) -> Option<&'a At<T>>,
    what: &str,
    show: impl Fn(&T) -> String,
) -> Option<&'a T> {
    let mut first: Option<(Kind, &At<T>)> = None;
    for kind in &args.order {
        let Some(at) = get(*kind) else { continue };
        match first {
            None => first = Some((*kind, at)),
            Some((k, f)) if f.value != at.value => cx.error_at(
                at.span,
                format!(
                    "conflicting `{what}`: `#[{}]` says {} but `#[{}]` on the same function says {}; \
                     stacked pglock attributes act together on one connection, so give the same value \
                     (or give it once)",
                    kind.name(),
                    show(&at.value),
                    k.name(),
                    show(&f.value),
                ),
            ),
            Some(_) => {}
        }
    }
    first.map(|(_, at)| &at.value)
}

/// Checks everything; `None` when an error was reported. `is_async` is true for an
/// `async fn` and for the boxed future of an `#[async_trait]` method.
pub(crate) fn check(cx: &Ctxt, args: Args, sig: &Signature, is_async: bool) -> Option<Checked> {
    if let Some(c) = &sig.constness {
        cx.error_spanned_by(
            c,
            "pglock attributes cannot be used on a `const fn`: taking a lock needs the database at \
             run time; remove `const`",
        );
    }
    let alias = agree(cx, &args, |k| args.using(k), "using", |s| format!("{s:?}")).cloned();
    let krate = agree(
        cx,
        &args,
        |k| args.krate(k),
        "crate",
        |p| format!("`{}`", p.text()),
    )
    .map(|p| p.0.clone());

    check_lock_limit(cx, args.timeout.as_ref(), "`timeout`");
    check_lock_limit(cx, args.lock_timeout.as_ref(), "this `#[lock_timeout]`");
    check_lock_limit(cx, args.prioritize_timeout.as_ref(), "`timeout`");
    if let Some(At {
        value: DurationArg::Nanos(0),
        span,
    }) = &args.lock_timeout
    {
        cx.error_at(
            *span,
            "`#[lock_timeout]` cannot be zero (PostgreSQL would read 0 as \"no limit\"): write \
             `#[lock_timeout(none)]` to remove the limit, or give a duration such as `\"5s\"`",
        );
    }
    let interval = match &args.interval {
        Some(At {
            value: DurationArg::Nanos(0),
            span,
        }) => {
            cx.error_at(
                *span,
                "`interval` must be longer than zero, as in `interval = \"1s\"`",
            );
            None
        }
        Some(At {
            value: DurationArg::None,
            span,
        }) => {
            cx.error_at(
                *span,
                "`interval` cannot be `none`: give a duration, as in `interval = \"1s\"`",
            );
            None
        }
        Some(At {
            value: DurationArg::Nanos(n),
            ..
        }) => Some(*n),
        None => None,
    };
    let min_blocker_age = match &args.min_blocker_age {
        Some(At {
            value: DurationArg::None,
            span,
        }) => {
            cx.error_at(
                *span,
                "`min_blocker_age` cannot be `none`: leave it out to spare no blocker, or give a \
                 duration, as in `min_blocker_age = \"5s\"`",
            );
            None
        }
        Some(At {
            value: DurationArg::Nanos(n),
            ..
        }) => Some(*n),
        None => None,
    };
    if args.has(Kind::Prioritize) {
        // django-pglock's documented pitfall: a lock timeout shorter than the
        // interval fails the body before the watchdog ever acts.
        let (interval_nanos, interval_words) = match interval {
            Some(n) => (n, format!("`interval` ({})", describe(n))),
            None => (
                DEFAULT_INTERVAL,
                format!("the default `interval` ({})", describe(DEFAULT_INTERVAL)),
            ),
        };
        if let Some(At {
            value: DurationArg::Nanos(t),
            span,
        }) = &args.prioritize_timeout
        {
            if *t == 0 {
                cx.error_at(
                    *span,
                    "`timeout` of `#[prioritize]` cannot be zero: leave it out (or write `timeout = \
                     none`) for no limit",
                );
            } else if *t < interval_nanos {
                cx.error_at(
                    *span,
                    format!(
                        "`timeout` ({}) is shorter than {interval_words}: the body would fail with a \
                         lock timeout before the watchdog first acts; make `timeout` longer than \
                         `interval`, or `interval` shorter",
                        describe(*t),
                    ),
                );
            }
        }
        if let Some(At {
            value: DurationArg::Nanos(t @ 1..),
            span,
        }) = &args.lock_timeout
        {
            if *t < interval_nanos {
                cx.error_at(
                    *span,
                    format!(
                        "`#[lock_timeout]` ({}) is shorter than {interval_words} of `#[prioritize]` \
                         on the same function: the body would fail with a lock timeout before the \
                         watchdog first acts; make the lock timeout longer, or `interval` shorter",
                        describe(*t),
                    ),
                );
            }
        }
    }
    if let Some(At {
        value: OnLost::Cancel,
        span,
    }) = &args.on_lost
    {
        if !is_async {
            cx.error_at(
                *span,
                "`on_lost = cancel` needs an `async fn`: a plain function cannot be stopped while it \
                 runs; use `on_lost = report` (the default), or make the function `async`",
            );
        }
    }
    let slot = check_slot(cx, &args);
    let on_fail = args.on_fail.as_ref().map_or(OnFail::Raise, |a| a.value);
    let raise_errors = match &args.on_error {
        Some(At { value, span }) if on_fail != OnFail::Skip && !args.on_fail_unknown => {
            cx.error_at(
                *span,
                "`on_error` says what `on_fail = skip` does with errors other than a busy lock; \
                 with `on_fail = raise` (the default) every error is returned already: remove \
                 `on_error`, or add `on_fail = skip`",
            );
            *value == OnFail::Raise
        }
        Some(At {
            value: OnFail::Raise,
            span,
        }) => {
            if returns_unit(sig) {
                cx.error_at(
                    *span,
                    format!(
                        "`on_error = raise` returns errors other than a busy lock from the \
                         function, but `{}` returns `()`: return `Result<(), E>` where \
                         `E: From<pglock_runtime::Error>`",
                        sig.ident
                    ),
                );
            }
            true
        }
        _ => false,
    };
    if on_fail == OnFail::Raise && !args.on_fail_unknown && returns_unit(sig) {
        let (why, instead) = if args.has(Kind::AdvisoryLock) {
            (
                "`on_fail = raise` (the default) returns the lock error from the function",
                ", or add `on_fail = skip` to `#[advisory_lock]` to skip the body instead",
            )
        } else if args.has(Kind::Prioritize) {
            ("`#[prioritize]` returns its errors from the function", "")
        } else {
            ("`#[lock_timeout]` returns its errors from the function", "")
        };
        let at: &dyn quote::ToTokens = match &sig.output {
            ReturnType::Default => &sig.ident,
            ReturnType::Type(_, t) => t,
        };
        cx.error_spanned_by(
            at,
            format!(
                "{why}, but `{}` returns `()`: return `Result<_, E>` where \
                 `E: From<pglock_runtime::Error>`{instead}",
                sig.ident
            ),
        );
    }
    if cx.has_errors() {
        return None;
    }
    let flag = |f: &Option<At<bool>>| f.as_ref().is_some_and(|a| a.value);
    let (has_advisory, has_prioritize) = (args.has(Kind::AdvisoryLock), args.has(Kind::Prioritize));
    Some(Checked {
        krate: krate.unwrap_or_else(|| syn::parse_quote!(::pglock_runtime)),
        alias,
        advisory: has_advisory.then(|| Advisory {
            key: args.key.map(|k| k.value),
            hash: match args.hash.map(|h| h.value) {
                Some("django_pglocks") => "DjangoPglocks",
                Some("django_pglocks_v1") => "DjangoPglocksV1",
                Some("postgres_lock") => "PostgresLock",
                Some("sqlx") => "Sqlx",
                _ => "DjangoPglock",
            },
            shared: flag(&args.shared),
            xact: flag(&args.xact),
            timeout: args.timeout.map(|t| t.value),
            cancel_on_lost: args.on_lost.is_some_and(|l| l.value == OnLost::Cancel),
            slot,
            retry: flag(&args.retry),
            fenced: flag(&args.fenced),
        }),
        on_fail,
        raise_errors,
        lock_timeout: args.lock_timeout.map(|t| t.value),
        prioritize: has_prioritize.then(|| Prioritize {
            interval,
            periodic: args.periodic.map(|p| p.value),
            cancel: args.action.is_some_and(|a| a.value == Action::Cancel),
            min_blocker_age,
            max_kills: args.max_kills.map(|m| m.value),
            dry_run: flag(&args.dry_run),
            signal_superusers: flag(&args.signal_superusers),
            any_database: flag(&args.any_database),
            timeout: args.prioritize_timeout.map(|t| t.value),
        }),
    })
}

/// The kind of a pglock attribute among a function's attributes, by the last
/// segment of its path (`advisory_lock`, `pglock_runtime::advisory_lock`, …).
pub(crate) fn pglock_kind(attr: &syn::Attribute) -> Option<Kind> {
    if !matches!(attr.style, syn::AttrStyle::Outer) {
        return None;
    }
    let last = attr.path().segments.last()?;
    Kind::from_name(&last.ident.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::parse_into;
    use proc_macro2::{Span, TokenStream};
    use quote::quote;

    /// Checks `attrs` (kind, arguments), in that order, against `sig`.
    fn check_all(
        attrs: &[(Kind, TokenStream)],
        sig: TokenStream,
    ) -> (Option<Checked>, Vec<String>) {
        let cx = Ctxt::default();
        let mut args = Args::default();
        for (kind, tokens) in attrs {
            parse_into(&cx, &mut args, *kind, tokens.clone(), Span::call_site());
        }
        let sig: Signature = syn::parse2(sig).unwrap();
        let is_async = sig.asyncness.is_some();
        let checked = check(&cx, args, &sig, is_async);
        (checked, cx.messages())
    }

    fn errors(attrs: &[(Kind, TokenStream)], sig: TokenStream) -> Vec<String> {
        check_all(attrs, sig).1
    }

    const RESULT_FN: &str = "async fn f() -> Result<(), E>";

    fn result_fn() -> TokenStream {
        RESULT_FN.parse().unwrap()
    }

    #[test]
    fn defaults() {
        let (c, e) = check_all(&[(Kind::AdvisoryLock, quote!())], result_fn());
        assert!(e.is_empty(), "{e:?}");
        let c = c.unwrap();
        assert_eq!(
            quote::ToTokens::to_token_stream(&c.krate).to_string(),
            ":: pglock_runtime"
        );
        assert_eq!(c.alias, None);
        assert_eq!(c.on_fail, OnFail::Raise);
        let a = c.advisory.unwrap();
        assert!(
            a.key.is_none() && !a.shared && !a.xact && a.timeout.is_none() && !a.cancel_on_lost
        );
        assert_eq!(a.hash, "DjangoPglock");
        assert!(c.lock_timeout.is_none() && c.prioritize.is_none());
    }

    #[test]
    fn stacked_attributes_share_one_alias_and_crate() {
        let (c, e) = check_all(
            &[
                (Kind::Prioritize, quote!(using = "a", crate = "x")),
                (Kind::LockTimeout, quote!("5s", using = "a")),
                (Kind::AdvisoryLock, quote!(crate = "x")),
            ],
            result_fn(),
        );
        assert!(e.is_empty(), "{e:?}");
        let c = c.unwrap();
        assert_eq!(c.alias.as_deref(), Some("a"));
        assert_eq!(quote::ToTokens::to_token_stream(&c.krate).to_string(), "x");
        assert!(c.advisory.is_some() && c.prioritize.is_some());
        assert_eq!(c.lock_timeout, Some(DurationArg::Nanos(5_000_000_000)));
    }

    #[test]
    fn conflicts_point_at_the_later_attribute() {
        let e = errors(
            &[
                (Kind::AdvisoryLock, quote!(using = "a", crate = "x")),
                (Kind::LockTimeout, quote!("5s", using = "b", crate = "y")),
            ],
            result_fn(),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with(
            "conflicting `using`: `#[lock_timeout]` says \"b\" but `#[advisory_lock]`"
        ));
        assert!(e[1]
            .starts_with("conflicting `crate`: `#[lock_timeout]` says `y` but `#[advisory_lock]`"));
    }

    #[test]
    fn on_error() {
        let (c, e) = check_all(
            &[(Kind::AdvisoryLock, quote!(on_fail = skip, on_error = raise))],
            result_fn(),
        );
        assert!(e.is_empty(), "{e:?}");
        assert!(c.unwrap().raise_errors);
        let e = errors(
            &[(Kind::AdvisoryLock, quote!(on_error = raise))],
            result_fn(),
        );
        assert!(
            e[0].starts_with("`on_error` says what `on_fail = skip` does"),
            "{e:?}"
        );
        let e = errors(
            &[(Kind::AdvisoryLock, quote!(on_fail = skip, on_error = raise))],
            quote!(async fn f()),
        );
        assert!(
            e[0].starts_with("`on_error = raise` returns errors"),
            "{e:?}"
        );
        let (c, e) = check_all(
            &[(Kind::AdvisoryLock, quote!(on_fail = skip, on_error = skip))],
            quote!(async fn f()),
        );
        assert!(e.is_empty() && !c.unwrap().raise_errors, "{e:?}");
    }

    #[test]
    fn slots() {
        let skip = quote!(timeout = 0, on_fail = skip, once_per = "1m", retry);
        let (c, e) = check_all(&[(Kind::AdvisoryLock, skip)], quote!(async fn f()));
        assert!(e.is_empty(), "{e:?}");
        let a = c.unwrap().advisory.unwrap();
        assert!(matches!(a.slot, Some(Slot::Every(60_000_000_000))) && a.retry);
        let e = errors(
            &[(Kind::AdvisoryLock, quote!(once_per = none))],
            result_fn(),
        );
        assert!(e[0].starts_with("`once_per` cannot be `none`"), "{e:?}");
        let e = errors(
            &[(Kind::AdvisoryLock, quote!(once_per = "500us"))],
            result_fn(),
        );
        assert!(e[0].starts_with("`once_per` must be at least 1ms"), "{e:?}");
        let e = errors(
            &[(Kind::AdvisoryLock, quote!(once_per = "1s", shared))],
            result_fn(),
        );
        assert!(
            e[0].starts_with("`shared` cannot be used with `once_per`"),
            "{e:?}"
        );
        let e = errors(&[(Kind::AdvisoryLock, quote!(retry))], result_fn());
        assert!(e[0].starts_with("`retry` says whether"), "{e:?}");
        let (c, e) = check_all(
            &[(Kind::AdvisoryLock, quote!(slot = day, xact))],
            result_fn(),
        );
        assert!(e.is_empty(), "{e:?}");
        assert!(matches!(
            c.unwrap().advisory.unwrap().slot,
            Some(Slot::Expr(_))
        ));
    }

    #[test]
    fn zero_and_none_durations() {
        let e = errors(&[(Kind::LockTimeout, quote!(0))], result_fn());
        assert!(e[0].contains("write `#[lock_timeout(none)]`"), "{e:?}");
        assert!(errors(&[(Kind::LockTimeout, quote!(none))], result_fn()).is_empty());
        let e = errors(
            &[(
                Kind::Prioritize,
                quote!(interval = none, min_blocker_age = none),
            )],
            result_fn(),
        );
        assert_eq!(e.len(), 2, "{e:?}");
        let e = errors(&[(Kind::Prioritize, quote!(timeout = 0))], result_fn());
        assert!(e[0].contains("cannot be zero"), "{e:?}");
        // `timeout = 0` of an advisory lock means "do not wait": fine.
        assert!(errors(&[(Kind::AdvisoryLock, quote!(timeout = 0))], result_fn()).is_empty());
    }

    #[test]
    fn limits_above_postgres_maximum() {
        let e = errors(
            &[(Kind::AdvisoryLock, quote!(timeout = "30d"))],
            result_fn(),
        );
        assert!(
            e[0].starts_with("`timeout` is longer than PostgreSQL's largest `lock_timeout`"),
            "{e:?}"
        );
        let e = errors(&[(Kind::LockTimeout, quote!(2147484))], result_fn());
        assert!(
            e[0].starts_with("this `#[lock_timeout]` is longer"),
            "{e:?}"
        );
        assert!(errors(&[(Kind::LockTimeout, quote!(2147483))], result_fn()).is_empty());
        let e = errors(
            &[(Kind::Prioritize, quote!(timeout = "1000h"))],
            result_fn(),
        );
        assert_eq!(e.len(), 1, "{e:?}");
        // Not a lock wait limit: any length.
        assert!(errors(
            &[(Kind::Prioritize, quote!(min_blocker_age = "100d"))],
            result_fn()
        )
        .is_empty());
    }

    #[test]
    fn prioritize_timeout_against_interval() {
        let e = errors(
            &[(Kind::Prioritize, quote!(interval = "2s", timeout = "500ms"))],
            result_fn(),
        );
        assert!(
            e[0].starts_with("`timeout` (500ms) is shorter than `interval` (2s)"),
            "{e:?}"
        );
        let e = errors(
            &[(Kind::Prioritize, quote!(timeout = "500ms"))],
            result_fn(),
        );
        assert!(
            e[0].starts_with("`timeout` (500ms) is shorter than the default `interval` (1s)"),
            "{e:?}"
        );
        assert!(errors(
            &[(
                Kind::Prioritize,
                quote!(interval = "100ms", timeout = "500ms")
            )],
            result_fn()
        )
        .is_empty());
        assert!(errors(&[(Kind::Prioritize, quote!(timeout = "1s"))], result_fn()).is_empty());
        let e = errors(
            &[
                (Kind::Prioritize, quote!(interval = "2s")),
                (Kind::LockTimeout, quote!(1.5)),
            ],
            result_fn(),
        );
        assert!(
            e[0].starts_with("`#[lock_timeout]` (1500ms) is shorter than `interval` (2s)"),
            "{e:?}"
        );
        // Without `#[prioritize]`, any lock timeout is fine.
        assert!(errors(&[(Kind::LockTimeout, quote!("1ms"))], result_fn()).is_empty());
    }

    #[test]
    fn return_types() {
        let unit = quote!(async fn f());
        let e = errors(&[(Kind::AdvisoryLock, quote!())], unit.clone());
        assert!(
            e[0].contains("but `f` returns `()`") && e[0].ends_with("to skip the body instead"),
            "{e:?}"
        );
        let e = errors(&[(Kind::AdvisoryLock, quote!())], quote!(fn f() -> ()));
        assert_eq!(e.len(), 1);
        assert!(errors(
            &[(Kind::AdvisoryLock, quote!(on_fail = skip))],
            unit.clone()
        )
        .is_empty());
        let e = errors(&[(Kind::LockTimeout, quote!("1s"))], unit.clone());
        assert!(
            e[0].starts_with("`#[lock_timeout]` returns its errors"),
            "{e:?}"
        );
        let e = errors(&[(Kind::Prioritize, quote!())], unit.clone());
        assert!(
            e[0].starts_with("`#[prioritize]` returns its errors"),
            "{e:?}"
        );
        // A misspelt `on_fail` is reported once, not again as a return-type error.
        let e = errors(&[(Kind::AdvisoryLock, quote!(on_fail = skipp))], unit);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].ends_with("did you mean `skip`?"), "{e:?}");
    }

    #[test]
    fn const_fn_and_on_lost() {
        let e = errors(
            &[(Kind::AdvisoryLock, quote!())],
            quote!(const fn f() -> Result<(), E>),
        );
        assert!(e[0].contains("`const fn`"), "{e:?}");
        let e = errors(
            &[(Kind::AdvisoryLock, quote!(on_lost = cancel))],
            quote!(fn f() -> Result<(), E>),
        );
        assert!(
            e[0].starts_with("`on_lost = cancel` needs an `async fn`"),
            "{e:?}"
        );
        assert!(errors(
            &[(Kind::AdvisoryLock, quote!(on_lost = cancel))],
            result_fn()
        )
        .is_empty());
    }

    #[test]
    fn every_error_at_once() {
        let e = errors(
            &[
                (
                    Kind::AdvisoryLock,
                    quote!(timeout = "5y", hash = md5, colour = 1),
                ),
                (Kind::LockTimeout, quote!(0)),
                (Kind::AdvisoryLock, quote!()),
            ],
            quote!(const fn f()),
        );
        assert_eq!(e.len(), 7, "{e:?}");
    }

    #[test]
    fn hashes() {
        for (word, variant) in [
            ("django_pglock", "DjangoPglock"),
            ("django_pglocks", "DjangoPglocks"),
            ("django_pglocks_v1", "DjangoPglocksV1"),
            ("postgres_lock", "PostgresLock"),
            ("sqlx", "Sqlx"),
        ] {
            let id = syn::Ident::new(word, Span::call_site());
            let (c, e) = check_all(&[(Kind::AdvisoryLock, quote!(hash = #id))], result_fn());
            assert!(e.is_empty(), "{e:?}");
            assert_eq!(c.unwrap().advisory.unwrap().hash, variant);
        }
        assert_eq!(crate::attr::HASHES.len(), 5);
    }

    #[test]
    fn attribute_kinds_by_last_segment() {
        let attrs: Vec<syn::Attribute> = vec![
            syn::parse_quote!(#[advisory_lock]),
            syn::parse_quote!(#[pglock_runtime::lock_timeout("1s")]),
            syn::parse_quote!(#[::my::prioritize]),
            syn::parse_quote!(#[tracing::instrument]),
            syn::parse_quote!(#[doc = "advisory_lock"]),
        ];
        let kinds: Vec<_> = attrs.iter().map(pglock_kind).collect();
        assert_eq!(
            kinds,
            [
                Some(Kind::AdvisoryLock),
                Some(Kind::LockTimeout),
                Some(Kind::Prioritize),
                None,
                None
            ]
        );
    }
}
