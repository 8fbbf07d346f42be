//! Semantic checks over all pglock attributes of one function, producing what
//! the expansion needs. Every problem is reported, each at the argument to change.

use proc_macro2::Span;
use syn::{Expr, ItemFn, ReturnType, Type};

use crate::attr::{Args, At, Kind, OnFail, OnLost};
use crate::ctxt::Ctxt;
use crate::duration::DurationArg;

pub(crate) struct Checked {
    pub(crate) krate: syn::Path,
    pub(crate) alias: Option<String>,
    pub(crate) advisory: Option<Advisory>,
    pub(crate) on_fail: OnFail,
    pub(crate) lock_timeout: Option<DurationArg>,
    pub(crate) prioritize: Option<Prioritize>,
    /// Where to point type errors about the return type.
    pub(crate) return_span: Span,
}

pub(crate) struct Advisory {
    pub(crate) key: Option<Expr>,
    pub(crate) hash: &'static str,
    pub(crate) shared: bool,
    pub(crate) xact: bool,
    pub(crate) timeout: Option<DurationArg>,
    pub(crate) cancel_on_lost: bool,
}

pub(crate) struct Prioritize {
    pub(crate) interval: Option<DurationArg>,
    pub(crate) periodic: Option<bool>,
    pub(crate) cancel: bool,
    pub(crate) min_blocker_age: Option<DurationArg>,
    pub(crate) max_kills: Option<u32>,
    pub(crate) dry_run: bool,
    pub(crate) timeout: Option<DurationArg>,
}

fn describe(d: DurationArg) -> String {
    match d {
        DurationArg::None => "none".into(),
        DurationArg::Nanos(n) if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        DurationArg::Nanos(n) if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        DurationArg::Nanos(n) => format!("{n}ns"),
    }
}

fn is_unit(ret: &ReturnType) -> bool {
    match ret {
        ReturnType::Default => true,
        ReturnType::Type(_, t) => matches!(&**t, Type::Tuple(t) if t.elems.is_empty()),
    }
}

pub(crate) fn check(cx: &Ctxt, args: Args, item: &ItemFn) -> Option<Checked> {
    let sig = &item.sig;
    if let Some(c) = &sig.constness {
        cx.error_spanned_by(
            c,
            "pglock attributes cannot be used on a `const fn`: taking a lock needs the database \
             at run time; remove `const`",
        );
    }
    // One alias for all stacked attributes: they act on one connection.
    let mut alias: Option<&At<String>> = None;
    for (kind, using) in &args.using {
        match alias {
            Some(first) if first.value != using.value => cx.error_at(
                using.span,
                format!(
                    "conflicting `using`: `#[{}]` names \"{}\" but another pglock attribute on this \
                     function names \"{}\"; stacked pglock attributes act on one connection, so give \
                     them the same alias",
                    kind.name(),
                    using.value,
                    first.value
                ),
            ),
            _ => alias = alias.or(Some(using)),
        }
    }
    let on_fail = args.on_fail.as_ref().map_or(OnFail::Raise, |a| a.value);
    let is_async = sig.asyncness.is_some();

    if let Some(At {
        value: DurationArg::Nanos(0),
        span,
    }) = &args.lock_timeout
    {
        cx.error_at(
            *span,
            "a `#[lock_timeout]` of zero is not allowed (PostgreSQL reads 0 as \"no limit\"): \
             write `none` to remove the limit",
        );
    }
    if let Some(At {
        value: DurationArg::Nanos(0),
        span,
    }) = &args.interval
    {
        cx.error_at(
            *span,
            "`interval` must be longer than zero, as in `interval = \"1s\"`",
        );
    }
    if let Some(At {
        value: DurationArg::None,
        span,
    }) = &args.interval
    {
        cx.error_at(
            *span,
            "`interval` needs a duration, as in `interval = \"1s\"`",
        );
    }
    if let Some(At {
        value: DurationArg::None,
        span,
    }) = &args.min_blocker_age
    {
        cx.error_at(
            *span,
            "`min_blocker_age` needs a duration, as in `min_blocker_age = \"5s\"`",
        );
    }
    // django-pglock's documented pitfall: a timeout shorter than the interval fails
    // the body before the watchdog ever acts.
    if let Some(At {
        value: DurationArg::Nanos(t),
        span,
    }) = &args.prioritize_timeout
    {
        let interval = match &args.interval {
            Some(At {
                value: DurationArg::Nanos(i),
                ..
            }) => *i,
            Some(_) => u64::MAX,
            None => 1_000_000_000,
        };
        if *t == 0 {
            cx.error_at(
                *span,
                "a `timeout` of zero is not allowed: write `none` for no limit",
            );
        } else if *t < interval {
            cx.error_at(
                *span,
                format!(
                    "`timeout` ({}) is shorter than `interval` ({}): the body would fail with a lock \
                     timeout before the watchdog first acts; make `timeout` longer than `interval`",
                    describe(DurationArg::Nanos(*t)),
                    describe(DurationArg::Nanos(interval)),
                ),
            );
        }
    }
    if let Some(lost) = &args.on_lost {
        if lost.value == OnLost::Cancel && !is_async {
            cx.error_at(
                lost.span,
                "`on_lost = cancel` needs an `async fn`: a plain function cannot be stopped while it \
                 runs; use `on_lost = report`, or make the function `async`",
            );
        }
    }
    let raises = on_fail == OnFail::Raise;
    if raises && is_unit(&sig.output) {
        let which = if args.advisory.is_some() {
            "`on_fail = raise` (the default) returns the lock error from the function"
        } else if args.prioritize.is_some() {
            "`#[prioritize]` returns its errors from the function"
        } else {
            "`#[lock_timeout]` returns its errors from the function"
        };
        let target: Box<dyn quote::ToTokens> = match &sig.output {
            ReturnType::Default => Box::new(sig.ident.clone()),
            ReturnType::Type(_, t) => Box::new(t.clone()),
        };
        cx.error_spanned_by(
            target,
            format!(
                "{which}, but `{}` returns `()`: return a `Result<_, E>` where \
                 `E: From<pglock_runtime::Error>`{}",
                sig.ident,
                if args.advisory.is_some() {
                    ", or use `on_fail = skip`"
                } else {
                    ""
                }
            ),
        );
    }
    if cx.has_errors() {
        return None;
    }
    let return_span = match &sig.output {
        ReturnType::Default => sig.ident.span(),
        ReturnType::Type(_, t) => syn::spanned::Spanned::span(&**t),
    };
    let krate = args
        .krate
        .map(|k| k.value)
        .unwrap_or_else(|| syn::parse_quote!(::pglock_runtime));
    let hash = match args.hash.as_ref().map(|h| h.value.to_string()).as_deref() {
        Some("django_pglocks") => "DjangoPglocks",
        Some("django_pglocks_v1") => "DjangoPglocksV1",
        Some("postgres_lock") => "PostgresLock",
        Some("sqlx") => "Sqlx",
        _ => "DjangoPglock",
    };
    let flag = |f: &Option<At<bool>>| f.as_ref().is_some_and(|a| a.value);
    Some(Checked {
        krate,
        alias: alias.map(|a| a.value.clone()),
        advisory: args.advisory.map(|_| Advisory {
            key: args.key.map(|k| k.value),
            hash,
            shared: flag(&args.shared),
            xact: flag(&args.xact),
            timeout: args.timeout.map(|t| t.value),
            cancel_on_lost: args.on_lost.is_some_and(|l| l.value == OnLost::Cancel),
        }),
        on_fail,
        lock_timeout: args.lock_timeout.map(|t| t.value),
        prioritize: args.prioritize.map(|_| Prioritize {
            interval: args.interval.map(|i| i.value),
            periodic: args.periodic.map(|p| p.value),
            cancel: args.action.is_some_and(|a| a.value == "cancel"),
            min_blocker_age: args.min_blocker_age.map(|m| m.value),
            max_kills: args.max_kills.map(|m| m.value),
            dry_run: flag(&args.dry_run),
            timeout: args.prioritize_timeout.map(|t| t.value),
        }),
        return_span,
    })
}

/// The kind of a pglock attribute among a function's attributes, by the last
/// segment of its path (`advisory_lock`, `pglock_runtime::advisory_lock`, …).
pub(crate) fn pglock_kind(attr: &syn::Attribute) -> Option<Kind> {
    let last = attr.path().segments.last()?;
    Kind::from_name(&last.ident.to_string())
}
