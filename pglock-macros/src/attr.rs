//! Parsing: the arguments of every pglock attribute on one function into one
//! typed struct whose fields keep the span that set them. Semantic checks that
//! involve more than one argument live in `valid.rs`.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, Lit, LitStr, Token};

use crate::ctxt::Ctxt;
use crate::duration::{self, DurationArg};

/// Which pglock attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    AdvisoryLock,
    LockTimeout,
    Prioritize,
}

impl Kind {
    pub(crate) const ALL: [Kind; 3] = [Kind::AdvisoryLock, Kind::LockTimeout, Kind::Prioritize];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::AdvisoryLock => "advisory_lock",
            Kind::LockTimeout => "lock_timeout",
            Kind::Prioritize => "prioritize",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The arguments this attribute takes, in the order the docs list them.
    pub(crate) fn arguments(self) -> &'static [&'static str] {
        match self {
            Kind::AdvisoryLock => &[
                "key", "shared", "xact", "timeout", "on_fail", "on_error", "on_lost", "once_per",
                "slot", "retry", "fenced", "using", "hash", "crate",
            ],
            Kind::LockTimeout => &["using", "crate"],
            Kind::Prioritize => &[
                "interval",
                "periodic",
                "action",
                "min_blocker_age",
                "max_kills",
                "dry_run",
                "signal_superusers",
                "any_database",
                "timeout",
                "using",
                "crate",
            ],
        }
    }
}

pub(crate) const HASHES: &[&str] = &[
    "django_pglock",
    "django_pglocks",
    "django_pglocks_v1",
    "postgres_lock",
    "sqlx",
];
const ON_FAIL: &[&str] = &["raise", "skip"];
const ON_LOST: &[&str] = &["report", "cancel"];
const ACTIONS: &[&str] = &["terminate", "cancel"];

/// One argument as written: `name = value`, a bare `name`, or (for
/// `#[lock_timeout]`) a positional value.
pub(crate) struct RawArg {
    pub(crate) name: Option<Ident>,
    pub(crate) value: Option<Expr>,
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // `crate` is a keyword: `Ident::parse_any` accepts it as a name.
        if input.peek(Ident::peek_any)
            && (input.peek2(Token![=]) || input.peek2(Token![,]) || {
                let fork = input.fork();
                fork.call(Ident::parse_any).is_ok() && fork.is_empty()
            })
        {
            let name = input.call(Ident::parse_any)?;
            let value = if input.parse::<Option<Token![=]>>()?.is_some() {
                Some(input.parse()?)
            } else {
                None
            };
            return Ok(RawArg {
                name: Some(name),
                value,
            });
        }
        Ok(RawArg {
            name: None,
            value: Some(input.parse()?),
        })
    }
}

/// A value and the span of the argument that set it.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// What a duplicate is reported as.
enum Dup<'a> {
    Argument(&'a Ident),
    Attribute(Kind),
}

/// The one duplicate check (serde's `Attr::set`): sets `slot` once; a second
/// setting is an error at the later one, and the first value stays.
fn set_once<T>(cx: &Ctxt, slot: &mut Option<At<T>>, value: T, span: Span, dup: Dup<'_>) {
    if slot.is_some() {
        match dup {
            Dup::Argument(name) => cx.error_at(
                span,
                format!("duplicate argument `{name}`: remove one of them"),
            ),
            Dup::Attribute(kind) => cx.error_at(
                span,
                format!(
                    "`#[{}]` is given twice on this function: remove one, or merge their arguments",
                    kind.name()
                ),
            ),
        }
    } else {
        *slot = Some(At { value, span });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFail {
    Raise,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnLost {
    Report,
    Cancel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Terminate,
    Cancel,
}

/// Every argument of every pglock attribute on one function.
#[derive(Default)]
pub(crate) struct Args {
    /// The attributes present, indexed by `Kind`, each with the span of its name.
    pub(crate) attrs: [Option<At<()>>; 3],
    /// The order the attributes were parsed in (the expanding one first, then the
    /// others as written), so conflicts point at the later one.
    pub(crate) order: Vec<Kind>,
    // advisory_lock
    pub(crate) key: Option<At<Expr>>,
    pub(crate) shared: Option<At<bool>>,
    pub(crate) xact: Option<At<bool>>,
    pub(crate) timeout: Option<At<DurationArg>>,
    pub(crate) on_fail: Option<At<OnFail>>,
    /// `on_fail` was given but not understood: its return-type rules are moot.
    pub(crate) on_fail_unknown: bool,
    pub(crate) on_lost: Option<At<OnLost>>,
    /// `on_error = raise`: with `on_fail = skip`, errors other than a busy lock
    /// are returned.
    pub(crate) on_error: Option<At<OnFail>>,
    pub(crate) hash: Option<At<&'static str>>,
    pub(crate) once_per: Option<At<DurationArg>>,
    pub(crate) slot: Option<At<Expr>>,
    pub(crate) retry: Option<At<bool>>,
    pub(crate) fenced: Option<At<bool>>,
    // lock_timeout
    pub(crate) lock_timeout: Option<At<DurationArg>>,
    // prioritize
    pub(crate) interval: Option<At<DurationArg>>,
    pub(crate) periodic: Option<At<bool>>,
    pub(crate) action: Option<At<Action>>,
    pub(crate) min_blocker_age: Option<At<DurationArg>>,
    pub(crate) max_kills: Option<At<u32>>,
    pub(crate) dry_run: Option<At<bool>>,
    pub(crate) signal_superusers: Option<At<bool>>,
    pub(crate) any_database: Option<At<bool>>,
    pub(crate) prioritize_timeout: Option<At<DurationArg>>,
    // every attribute, per attribute (stacked ones must agree: `valid.rs`)
    pub(crate) using: [Option<At<String>>; 3],
    pub(crate) krate: [Option<At<CratePath>>; 3],
}

/// The path given by `crate = "…"`; equal when the paths are.
#[derive(Clone)]
pub(crate) struct CratePath(pub(crate) syn::Path);

impl CratePath {
    pub(crate) fn text(&self) -> String {
        self.0.to_token_stream().to_string().replace(' ', "")
    }
}

impl PartialEq for CratePath {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl Args {
    pub(crate) fn has(&self, kind: Kind) -> bool {
        self.attrs[kind.index()].is_some()
    }

    pub(crate) fn using(&self, kind: Kind) -> Option<&At<String>> {
        self.using[kind.index()].as_ref()
    }

    pub(crate) fn krate(&self, kind: Kind) -> Option<&At<CratePath>> {
        self.krate[kind.index()].as_ref()
    }
}

fn list(choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The span of `value`, or of the argument's name when it has no value.
fn span_of(name: &Ident, value: Option<&Expr>) -> TokenStream {
    value.map_or_else(|| name.to_token_stream(), ToTokens::to_token_stream)
}

fn flag(cx: &Ctxt, name: &Ident, value: Option<&Expr>) -> Option<bool> {
    match value {
        None => Some(true),
        Some(Expr::Lit(syn::ExprLit {
            lit: Lit::Bool(b), ..
        })) => Some(b.value),
        Some(other) => {
            cx.error_spanned_by(
                other,
                format!(
                    "`{name}` is a flag: write `{name}`, or `{name} = true` / `{name} = false`"
                ),
            );
            None
        }
    }
}

/// One of a fixed set of bare words, as in `on_fail = skip`.
fn choice(
    cx: &Ctxt,
    name: &Ident,
    value: Option<&Expr>,
    choices: &[&'static str],
) -> Option<&'static str> {
    let expected = list(choices);
    match value {
        Some(Expr::Path(p)) if p.path.get_ident().is_some() && p.qself.is_none() => {
            let id = p.path.get_ident().expect("checked above");
            let word = id.to_string();
            if let Some(c) = choices.iter().find(|c| **c == word) {
                return Some(c);
            }
            let hint = suggest(&word, choices)
                .map_or_else(String::new, |s| format!(": did you mean `{s}`?"));
            cx.error_spanned_by(
                id,
                format!("unknown `{name}` value `{word}`; expected one of {expected}{hint}"),
            );
            None
        }
        Some(Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        })) if choices.contains(&s.value().as_str()) => {
            cx.error_spanned_by(s, format!("write `{name} = {}` without quotes", s.value()));
            None
        }
        Some(other) => {
            cx.error_spanned_by(other, format!("`{name}` takes one of {expected}"));
            None
        }
        None => {
            cx.error_spanned_by(
                name,
                format!("`{name}` needs a value: `{name} = …` with one of {expected}"),
            );
            None
        }
    }
}

fn duration_value(cx: &Ctxt, name: &Ident, value: Option<&Expr>) -> Option<DurationArg> {
    let Some(e) = value else {
        cx.error_spanned_by(
            name,
            format!("`{name}` needs a value, as in `{name} = \"2s\"`"),
        );
        return None;
    };
    match duration::parse(e) {
        Ok(d) => Some(d),
        Err(err) => {
            cx.syn_error(err);
            None
        }
    }
}

fn str_value(cx: &Ctxt, name: &Ident, value: Option<&Expr>, example: &str) -> Option<LitStr> {
    if let Some(Expr::Lit(syn::ExprLit {
        lit: Lit::Str(s), ..
    })) = value
    {
        return Some(s.clone());
    }
    cx.error_spanned_by(
        span_of(name, value),
        format!("`{name}` takes a string, as in `{name} = \"{example}\"`"),
    );
    None
}

fn count_value(cx: &Ctxt, name: &Ident, value: Option<&Expr>) -> Option<u32> {
    if let Some(Expr::Lit(syn::ExprLit {
        lit: Lit::Int(i), ..
    })) = value
    {
        if let Ok(n @ 1..) = i.base10_parse::<u32>() {
            return Some(n);
        }
        cx.error_spanned_by(
            i,
            format!("`{name}` must be a whole number from 1 to {}", u32::MAX),
        );
        return None;
    }
    cx.error_spanned_by(
        span_of(name, value),
        format!("`{name}` takes a whole number, as in `{name} = 3`"),
    );
    None
}

/// The closest valid argument name, for typos (`timout`) and names used by the
/// Python libraries pglock replaces (`lock_id`, `side_effect`).
fn suggest(word: &str, choices: &[&'static str]) -> Option<&'static str> {
    let known = match word {
        "lock_id" | "id" | "name" => Some("key"),
        "side_effect" | "on_busy" => Some("on_fail"),
        "database" | "db" | "alias" => Some("using"),
        "nowait" | "wait" | "try" | "acquire_timeout" => Some("timeout"),
        // ShedLock's `lockAtLeastFor` / `runAtMostOncePer`, and the obvious guesses.
        "lock_at_least_for"
        | "at_least"
        | "at_least_for"
        | "lock_at_most_once_per"
        | "at_most_once_per"
        | "run_at_most_once_per"
        | "run_once_per"
        | "once_every"
        | "every"
        | "period" => Some("once_per"),
        "tick" | "slot_key" | "fire_time" | "run_key" => Some("slot"),
        "retry_on_failure" | "retries" | "retry_failed" => Some("retry"),
        _ => None,
    };
    if let Some(k) = known.filter(|k| choices.contains(k)) {
        return Some(k);
    }
    choices
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses the arguments of one attribute into `args`, reporting problems to `cx`.
/// `name_span` is the span of the attribute's name (the call site for the
/// attribute being expanded).
pub(crate) fn parse_into(
    cx: &Ctxt,
    args: &mut Args,
    kind: Kind,
    tokens: TokenStream,
    name_span: Span,
) {
    if args.has(kind) {
        // Reported once, at the later attribute; its arguments are not looked at.
        set_once(
            cx,
            &mut args.attrs[kind.index()],
            (),
            name_span,
            Dup::Attribute(kind),
        );
        return;
    }
    set_once(
        cx,
        &mut args.attrs[kind.index()],
        (),
        name_span,
        Dup::Attribute(kind),
    );
    args.order.push(kind);
    let mut duration_given = false;
    let parsed = match Punctuated::<RawArg, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(p) => p,
        Err(e) => {
            cx.syn_error(e);
            return;
        }
    };
    for (i, arg) in parsed.into_iter().enumerate() {
        let positional = kind == Kind::LockTimeout && i == 0;
        let Some(name) = arg.name else {
            let value = arg.value.expect("a positional argument has a value");
            if positional {
                duration_given = true;
                if let Some(d) =
                    duration_value(cx, &Ident::new("lock_timeout", name_span), Some(&value))
                {
                    let span = syn::spanned::Spanned::span(&value);
                    args.lock_timeout = Some(At { value: d, span });
                }
            } else {
                cx.error_spanned_by(
                    &value,
                    format!(
                        "expected `name = value`: `#[{}]` takes named arguments{}",
                        kind.name(),
                        if kind == Kind::LockTimeout {
                            " after its duration"
                        } else {
                            ""
                        }
                    ),
                );
            }
            continue;
        };
        let n = name.to_string();
        let v = arg.value.as_ref();
        let span = name.span();
        if positional && n == "none" && v.is_none() {
            duration_given = true;
            args.lock_timeout = Some(At {
                value: DurationArg::None,
                span,
            });
            continue;
        }
        let dup = Dup::Argument(&name);
        match (kind, n.as_str()) {
            (_, "using") => {
                if let Some(s) = str_value(cx, &name, v, "analytics") {
                    let slot = &mut args.using[kind.index()];
                    set_once(cx, slot, s.value(), s.span(), dup);
                }
            }
            (_, "crate") => {
                if let Some(s) = str_value(cx, &name, v, "my_pglock") {
                    match s.parse::<syn::Path>() {
                        Ok(p) => set_once(cx, &mut args.krate[kind.index()], CratePath(p), s.span(), dup),
                        Err(_) => cx.error_spanned_by(
                            &s,
                            "`crate` takes the path of the renamed `pglock-runtime` dependency, as in `crate = \"my_pglock\"`",
                        ),
                    }
                }
            }
            (Kind::AdvisoryLock, "key") => match v {
                Some(e) => set_once(cx, &mut args.key, e.clone(), span, dup),
                None => cx.error_spanned_by(
                    &name,
                    "`key` needs a value, as in `key = (\"invoice\", id)`; without `key`, the key is the function's path",
                ),
            },
            (Kind::AdvisoryLock, "shared") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.shared, b, span, dup);
                }
            }
            (Kind::AdvisoryLock, "xact") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.xact, b, span, dup);
                }
            }
            (Kind::AdvisoryLock, "timeout") => {
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.timeout, d, span, dup);
                }
            }
            (Kind::AdvisoryLock, "on_fail") => {
                if let Some(c) = choice(cx, &name, v, ON_FAIL) {
                    let f = if c == "skip" { OnFail::Skip } else { OnFail::Raise };
                    set_once(cx, &mut args.on_fail, f, span, dup);
                } else {
                    args.on_fail_unknown = true;
                }
            }
            (Kind::AdvisoryLock, "on_error") => {
                if let Some(c) = choice(cx, &name, v, ON_FAIL) {
                    let f = if c == "skip" { OnFail::Skip } else { OnFail::Raise };
                    set_once(cx, &mut args.on_error, f, span, dup);
                }
            }
            (Kind::AdvisoryLock, "on_lost") => {
                if let Some(c) = choice(cx, &name, v, ON_LOST) {
                    let f = if c == "cancel" {
                        OnLost::Cancel
                    } else {
                        OnLost::Report
                    };
                    set_once(cx, &mut args.on_lost, f, span, dup);
                }
            }
            (Kind::AdvisoryLock, "hash") => {
                if let Some(c) = choice(cx, &name, v, HASHES) {
                    set_once(cx, &mut args.hash, c, span, dup);
                }
            }
            (Kind::AdvisoryLock, "once_per") => {
                if args.slot.is_some() {
                    both_slots(cx, span);
                }
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.once_per, d, span, dup);
                }
            }
            (Kind::AdvisoryLock, "slot") => match v {
                Some(e) => {
                    if args.once_per.is_some() {
                        both_slots(cx, span);
                    }
                    set_once(cx, &mut args.slot, e.clone(), span, dup);
                }
                None => cx.error_spanned_by(
                    &name,
                    "`slot` needs a value, as in `slot = planned_at` (any expression convertible \
                     to a slot: a `SystemTime`, a string, an integer); for slots on the \
                     database's clock write `once_per = \"1h\"` instead",
                ),
            },
            (Kind::AdvisoryLock, "retry") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.retry, b, span, dup);
                }
            }
            (Kind::AdvisoryLock, "fenced") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.fenced, b, span, dup);
                }
            }
            (Kind::Prioritize, "interval") => {
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.interval, d, span, dup);
                }
            }
            (Kind::Prioritize, "min_blocker_age") => {
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.min_blocker_age, d, span, dup);
                }
            }
            (Kind::Prioritize, "timeout") => {
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.prioritize_timeout, d, span, dup);
                }
            }
            (Kind::Prioritize, "periodic") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.periodic, b, span, dup);
                }
            }
            (Kind::Prioritize, "dry_run") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.dry_run, b, span, dup);
                }
            }
            (Kind::Prioritize, "signal_superusers") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.signal_superusers, b, span, dup);
                }
            }
            (Kind::Prioritize, "any_database") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.any_database, b, span, dup);
                }
            }
            (Kind::Prioritize, "action") => {
                if let Some(c) = choice(cx, &name, v, ACTIONS) {
                    let a = if c == "cancel" {
                        Action::Cancel
                    } else {
                        Action::Terminate
                    };
                    set_once(cx, &mut args.action, a, span, dup);
                }
            }
            (Kind::Prioritize, "max_kills") => {
                if let Some(c) = count_value(cx, &name, v) {
                    set_once(cx, &mut args.max_kills, c, span, dup);
                }
            }
            _ => unknown_argument(cx, kind, &name),
        }
    }
    if kind == Kind::LockTimeout && !duration_given {
        cx.error_at(
            name_span,
            "`#[lock_timeout]` needs a duration, as in `#[lock_timeout(\"5s\")]`, or `#[lock_timeout(none)]` for no limit",
        );
    }
}

/// `once_per` and `slot` on one function, reported at the later one.
fn both_slots(cx: &Ctxt, span: Span) {
    cx.error_at(
        span,
        "`once_per` and `slot` both say which slot a call belongs to: use `once_per = \"…\"` for \
         slots on the database's clock, or `slot = <expr>` to name the slot yourself, not both",
    );
}

fn unknown_argument(cx: &Ctxt, kind: Kind, name: &Ident) {
    let n = name.to_string();
    let valid = kind.arguments();
    // An argument of another pglock attribute: say which one takes it.
    let elsewhere = Kind::ALL
        .into_iter()
        .filter(|k| *k != kind && k.arguments().contains(&n.as_str()))
        .map(|k| format!("`#[{}]`", k.name()))
        .collect::<Vec<_>>();
    let hint = if let Some(s) = suggest(&n, valid) {
        format!("; did you mean `{s}`?")
    } else if !elsewhere.is_empty() {
        format!("; `{n}` is an argument of {}", elsewhere.join(" and "))
    } else if kind == Kind::LockTimeout {
        "; the duration comes first, as in `#[lock_timeout(\"5s\")]`".to_owned()
    } else if n == "exclusive" {
        "; locks are exclusive unless `shared` is given".to_owned()
    } else {
        String::new()
    };
    cx.error_spanned_by(
        name,
        format!(
            "unknown argument `{n}` for `#[{}]`; expected one of {}{hint}",
            kind.name(),
            list(valid)
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn parse(kind: Kind, tokens: TokenStream) -> (Args, Vec<String>) {
        let cx = Ctxt::default();
        let mut args = Args::default();
        parse_into(&cx, &mut args, kind, tokens, Span::call_site());
        (args, cx.messages())
    }

    #[test]
    fn every_advisory_argument() {
        let (a, errors) = parse(
            Kind::AdvisoryLock,
            quote!(
                key = ("invoice", id),
                shared,
                xact = false,
                timeout = "250ms",
                on_fail = skip,
                on_lost = cancel,
                using = "reports",
                hash = sqlx,
                crate = "my::pglock"
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            a.key.as_ref().unwrap().value.to_token_stream().to_string(),
            "(\"invoice\" , id)"
        );
        assert!(a.shared.as_ref().unwrap().value);
        assert!(!a.xact.as_ref().unwrap().value);
        assert_eq!(
            a.timeout.as_ref().unwrap().value,
            DurationArg::Nanos(250_000_000)
        );
        assert_eq!(a.on_fail.as_ref().unwrap().value, OnFail::Skip);
        assert_eq!(a.on_lost.as_ref().unwrap().value, OnLost::Cancel);
        assert_eq!(a.using(Kind::AdvisoryLock).unwrap().value, "reports");
        assert_eq!(a.hash.as_ref().unwrap().value, "sqlx");
        assert_eq!(
            a.krate(Kind::AdvisoryLock).unwrap().value.text(),
            "my::pglock"
        );
        assert_eq!(a.order, [Kind::AdvisoryLock]);
    }

    #[test]
    fn bare_attribute_has_no_arguments() {
        let (a, errors) = parse(Kind::AdvisoryLock, quote!());
        assert!(errors.is_empty());
        assert!(a.has(Kind::AdvisoryLock));
        assert!(a.key.is_none() && a.timeout.is_none() && a.on_fail.is_none());
    }

    #[test]
    fn lock_timeout_positional() {
        let (a, errors) = parse(Kind::LockTimeout, quote!("5s", using = "x"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            a.lock_timeout.as_ref().unwrap().value,
            DurationArg::Nanos(5_000_000_000)
        );
        let (a, errors) = parse(Kind::LockTimeout, quote!(none));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(a.lock_timeout.as_ref().unwrap().value, DurationArg::None);
        let (_, errors) = parse(Kind::LockTimeout, quote!(using = "x"));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("needs a duration"), "{errors:?}");
        let (_, errors) = parse(Kind::LockTimeout, quote!("5s", "6s"));
        assert!(
            errors[0].contains("named arguments after its duration"),
            "{errors:?}"
        );
    }

    #[test]
    fn every_prioritize_argument() {
        let (a, errors) = parse(
            Kind::Prioritize,
            quote!(
                interval = 0.5,
                periodic = false,
                action = cancel,
                min_blocker_age = "5s",
                max_kills = 3,
                dry_run,
                timeout = none,
                using = "x"
            ),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            a.interval.as_ref().unwrap().value,
            DurationArg::Nanos(500_000_000)
        );
        assert!(!a.periodic.as_ref().unwrap().value);
        assert_eq!(a.action.as_ref().unwrap().value, Action::Cancel);
        assert_eq!(
            a.min_blocker_age.as_ref().unwrap().value,
            DurationArg::Nanos(5_000_000_000)
        );
        assert_eq!(a.max_kills.as_ref().unwrap().value, 3);
        assert!(a.dry_run.as_ref().unwrap().value);
        assert_eq!(
            a.prioritize_timeout.as_ref().unwrap().value,
            DurationArg::None
        );
    }

    #[test]
    fn duplicates_are_reported_once_each_and_keep_the_first() {
        let (a, errors) = parse(
            Kind::AdvisoryLock,
            quote!(
                timeout = 0,
                shared,
                timeout = "1s",
                shared,
                using = "a",
                using = "b"
            ),
        );
        assert_eq!(
            errors,
            [
                "duplicate argument `timeout`: remove one of them",
                "duplicate argument `shared`: remove one of them",
                "duplicate argument `using`: remove one of them",
            ]
        );
        assert_eq!(a.timeout.as_ref().unwrap().value, DurationArg::Nanos(0));
        assert_eq!(a.using(Kind::AdvisoryLock).unwrap().value, "a");
    }

    #[test]
    fn same_attribute_twice() {
        let cx = Ctxt::default();
        let mut args = Args::default();
        parse_into(
            &cx,
            &mut args,
            Kind::Prioritize,
            quote!(),
            Span::call_site(),
        );
        parse_into(
            &cx,
            &mut args,
            Kind::Prioritize,
            quote!(bogus = 1),
            Span::call_site(),
        );
        let errors = cx.messages();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("`#[prioritize]` is given twice"));
    }

    #[test]
    fn unknown_arguments_list_the_valid_ones_and_suggest() {
        let (_, errors) = parse(
            Kind::AdvisoryLock,
            quote!(timout = 1, lock_id = 3, colour = 1, interval = "1s"),
        );
        assert_eq!(errors.len(), 4);
        assert!(errors[0].starts_with(
            "unknown argument `timout` for `#[advisory_lock]`; expected one of `key`, `shared`"
        ));
        assert!(
            errors[0].ends_with("did you mean `timeout`?"),
            "{}",
            errors[0]
        );
        assert!(errors[1].ends_with("did you mean `key`?"), "{}", errors[1]);
        assert!(!errors[2].contains("did you mean"), "{}", errors[2]);
        assert!(
            errors[3].ends_with("`interval` is an argument of `#[prioritize]`"),
            "{}",
            errors[3]
        );
        let (_, errors) = parse(Kind::LockTimeout, quote!("1s", shared));
        assert!(
            errors[0].contains("`shared` is an argument of `#[advisory_lock]`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn value_errors() {
        let (_, errors) = parse(
            Kind::AdvisoryLock,
            quote!(
                hash = md5,
                on_fail = "skip",
                on_lost = later,
                shared = 1,
                using = alias,
                key,
                crate = "a b"
            ),
        );
        assert_eq!(errors.len(), 7, "{errors:?}");
        assert!(errors[0].starts_with("unknown `hash` value `md5`; expected one of `django_pglock`, `django_pglocks`, `django_pglocks_v1`, `postgres_lock`, `sqlx`"));
        assert_eq!(errors[1], "write `on_fail = skip` without quotes");
        assert!(errors[2].contains("expected one of `report`, `cancel`"));
        assert!(errors[3].contains("`shared` is a flag"));
        assert!(errors[4].contains("`using` takes a string"));
        assert!(errors[5].contains("`key` needs a value"));
        assert!(errors[6].contains("`crate` takes the path"));
        let (_, errors) = parse(
            Kind::Prioritize,
            quote!(action = kil, max_kills = 0, max_kills = x),
        );
        assert!(
            errors[0].ends_with("did you mean `terminate`?")
                || errors[0].contains("expected one of `terminate`, `cancel`")
        );
        assert!(errors[1].contains("from 1 to"));
        assert!(errors[2].contains("takes a whole number"));
    }

    #[test]
    fn slot_arguments() {
        let (a, errors) = parse(
            Kind::AdvisoryLock,
            quote!(timeout = 0, on_fail = skip, once_per = "1h", retry),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            a.once_per.as_ref().unwrap().value,
            DurationArg::Nanos(3_600_000_000_000)
        );
        assert!(a.retry.as_ref().unwrap().value);
        let (a, errors) = parse(Kind::AdvisoryLock, quote!(slot = planned.date()));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            a.slot.as_ref().unwrap().value.to_token_stream().to_string(),
            "planned . date ()"
        );
        let (_, errors) = parse(Kind::AdvisoryLock, quote!(once_per = "1m", slot = day));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("`once_per` and `slot` both say"),
            "{errors:?}"
        );
        let (_, errors) = parse(Kind::AdvisoryLock, quote!(slot, once_per));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("`slot` needs a value"), "{errors:?}");
        assert!(errors[1].contains("`once_per` needs a value"), "{errors:?}");
    }

    #[test]
    fn shedlock_names_suggest_once_per() {
        for word in [
            "lock_at_least_for",
            "at_least",
            "run_at_most_once_per",
            "every",
        ] {
            let name = Ident::new(word, Span::call_site());
            let (_, errors) = parse(Kind::AdvisoryLock, quote!(#name = "1m"));
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(
                errors[0].ends_with("did you mean `once_per`?"),
                "{errors:?}"
            );
        }
        let (_, errors) = parse(Kind::AdvisoryLock, quote!(retries = true));
        assert!(errors[0].ends_with("did you mean `retry`?"), "{errors:?}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        let (_, errors) = parse(Kind::AdvisoryLock, quote!(key = , shared));
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn kind_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(k));
        }
        assert_eq!(Kind::from_name("instrument"), None);
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("timout", "timeout"), 1);
        assert_eq!(edit_distance("", "key"), 3);
        assert_eq!(edit_distance("shard", "shared"), 1);
        assert_eq!(suggest("xat", Kind::AdvisoryLock.arguments()), Some("xact"));
        assert_eq!(suggest("zzzzzz", Kind::AdvisoryLock.arguments()), None);
    }
}
