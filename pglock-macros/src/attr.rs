//! Parsing: attribute arguments into typed structs whose fields keep the span that
//! set them. Semantic checks live in `valid.rs`.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Token};

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
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::AdvisoryLock => "advisory_lock",
            Kind::LockTimeout => "lock_timeout",
            Kind::Prioritize => "prioritize",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        match name {
            "advisory_lock" => Some(Kind::AdvisoryLock),
            "lock_timeout" => Some(Kind::LockTimeout),
            "prioritize" => Some(Kind::Prioritize),
            _ => None,
        }
    }

    fn valid(self) -> &'static [&'static str] {
        match self {
            Kind::AdvisoryLock => &[
                "key", "shared", "xact", "timeout", "on_fail", "on_lost", "using", "hash", "crate",
            ],
            Kind::LockTimeout => &["using", "crate"],
            Kind::Prioritize => &[
                "interval",
                "periodic",
                "action",
                "min_blocker_age",
                "max_kills",
                "dry_run",
                "timeout",
                "using",
                "crate",
            ],
        }
    }
}

/// One argument as written: `name = value`, a bare `name`, or (for
/// `#[lock_timeout]`) a positional value.
pub(crate) struct RawArg {
    pub(crate) name: Option<Ident>,
    pub(crate) value: Option<Expr>,
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(Ident::peek_any)
            && (input.peek2(Token![=]) || input.peek2(Token![,]) || is_last_ident(input))
        {
            let name = input.call(Ident::parse_any)?;
            if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                let value: Expr = input.parse()?;
                return Ok(RawArg {
                    name: Some(name),
                    value: Some(value),
                });
            }
            return Ok(RawArg {
                name: Some(name),
                value: None,
            });
        }
        Ok(RawArg {
            name: None,
            value: Some(input.parse()?),
        })
    }
}

fn is_last_ident(input: ParseStream<'_>) -> bool {
    let fork = input.fork();
    fork.call(Ident::parse_any).is_ok() && fork.is_empty()
}

/// A value and the span of the argument that set it.
#[derive(Debug, Clone)]
pub(crate) struct At<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// Sets `slot` once; a second setting is an error at the later argument.
fn set_once<T>(cx: &Ctxt, slot: &mut Option<At<T>>, value: T, name: &Ident) {
    if slot.is_some() {
        cx.error_at(
            name.span(),
            format!("duplicate argument `{name}`: remove one of them"),
        );
    } else {
        *slot = Some(At {
            value,
            span: name.span(),
        });
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

/// Every argument of every pglock attribute on one function.
#[derive(Default)]
pub(crate) struct Args {
    // advisory_lock
    pub(crate) advisory: Option<Span>,
    pub(crate) key: Option<At<Expr>>,
    pub(crate) shared: Option<At<bool>>,
    pub(crate) xact: Option<At<bool>>,
    pub(crate) timeout: Option<At<DurationArg>>,
    pub(crate) on_fail: Option<At<OnFail>>,
    pub(crate) on_lost: Option<At<OnLost>>,
    pub(crate) hash: Option<At<Ident>>,
    // lock_timeout
    pub(crate) lock_timeout_attr: Option<Span>,
    pub(crate) lock_timeout: Option<At<DurationArg>>,
    // prioritize
    pub(crate) prioritize: Option<Span>,
    pub(crate) interval: Option<At<DurationArg>>,
    pub(crate) periodic: Option<At<bool>>,
    pub(crate) action: Option<At<Ident>>,
    pub(crate) min_blocker_age: Option<At<DurationArg>>,
    pub(crate) max_kills: Option<At<u32>>,
    pub(crate) dry_run: Option<At<bool>>,
    pub(crate) prioritize_timeout: Option<At<DurationArg>>,
    // shared
    /// `using` per attribute kind that gave it.
    pub(crate) using: Vec<(Kind, At<String>)>,
    pub(crate) krate: Option<At<syn::Path>>,
}

fn flag(cx: &Ctxt, name: &Ident, value: Option<&Expr>) -> Option<bool> {
    match value {
        None => Some(true),
        Some(Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Bool(b),
            ..
        })) => Some(b.value),
        Some(other) => {
            cx.error_spanned_by(
                other,
                format!("`{name}` is a flag: write `{name}` or `{name} = true` / `{name} = false`"),
            );
            None
        }
    }
}

fn ident_value(cx: &Ctxt, name: &Ident, value: Option<&Expr>, choices: &[&str]) -> Option<Ident> {
    let list = choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match value {
        Some(Expr::Path(p)) if p.path.get_ident().is_some() => {
            let id = p.path.get_ident().expect("checked").clone();
            if choices.contains(&id.to_string().as_str()) {
                Some(id)
            } else {
                cx.error_spanned_by(
                    &id,
                    format!("unknown `{name}` value `{id}`; expected one of {list}"),
                );
                None
            }
        }
        Some(other) => {
            cx.error_spanned_by(other, format!("expected one of {list} for `{name}`"));
            None
        }
        None => {
            cx.error_spanned_by(
                name,
                format!("`{name}` needs a value: `{name} = …` with one of {list}"),
            );
            None
        }
    }
}

fn duration_value(cx: &Ctxt, name: &Ident, value: Option<&Expr>) -> Option<DurationArg> {
    match value {
        None => {
            cx.error_spanned_by(
                name,
                format!("`{name}` needs a value, as in `{name} = \"2s\"`"),
            );
            None
        }
        Some(e) => match duration::parse(e) {
            Ok((d, _)) => Some(d),
            Err(err) => {
                cx.syn_error(err);
                None
            }
        },
    }
}

fn str_value(cx: &Ctxt, name: &Ident, value: Option<&Expr>) -> Option<LitStr> {
    match value {
        Some(Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        })) => Some(s.clone()),
        other => {
            cx.error_spanned_by(
                other.map_or_else(
                    || name.to_token_stream_owned(),
                    quote::ToTokens::to_token_stream,
                ),
                format!("`{name}` takes a string, as in `{name} = \"…\"`"),
            );
            None
        }
    }
}

trait OwnedTokens {
    fn to_token_stream_owned(&self) -> TokenStream;
}

impl OwnedTokens for Ident {
    fn to_token_stream_owned(&self) -> TokenStream {
        quote::ToTokens::to_token_stream(self)
    }
}

/// Parses the arguments of one attribute into `args`, reporting problems to `cx`.
pub(crate) fn parse_into(
    cx: &Ctxt,
    args: &mut Args,
    kind: Kind,
    tokens: TokenStream,
    attr_span: Span,
) {
    let parsed = match Punctuated::<RawArg, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(p) => p,
        Err(e) => {
            cx.syn_error(e);
            return;
        }
    };
    match kind {
        Kind::AdvisoryLock if args.advisory.is_some() => {
            cx.error_at(
                attr_span,
                "`#[advisory_lock]` is given twice on this function: remove one",
            );
            return;
        }
        Kind::Prioritize if args.prioritize.is_some() => {
            cx.error_at(
                attr_span,
                "`#[prioritize]` is given twice on this function: remove one",
            );
            return;
        }
        Kind::LockTimeout if args.lock_timeout_attr.is_some() => {
            cx.error_at(
                attr_span,
                "`#[lock_timeout]` is given twice on this function: remove one",
            );
            return;
        }
        Kind::AdvisoryLock => args.advisory = Some(attr_span),
        Kind::Prioritize => args.prioritize = Some(attr_span),
        Kind::LockTimeout => args.lock_timeout_attr = Some(attr_span),
    }
    let mut lock_timeout_seen = false;
    for (i, arg) in parsed.into_iter().enumerate() {
        let Some(name) = arg.name else {
            let value = arg.value.expect("positional arguments have a value");
            if kind == Kind::LockTimeout && i == 0 {
                lock_timeout_seen = true;
                match duration::parse(&value) {
                    Ok((d, span)) => args.lock_timeout = Some(At { value: d, span }),
                    Err(e) => cx.syn_error(e),
                }
            } else {
                cx.error_spanned_by(
                    &value,
                    format!(
                        "unexpected value: `#[{}]` takes `name = value` arguments",
                        kind.name()
                    ),
                );
            }
            continue;
        };
        let n = name.to_string();
        let v = arg.value.as_ref();
        if kind == Kind::LockTimeout && i == 0 && n == "none" && v.is_none() {
            lock_timeout_seen = true;
            args.lock_timeout = Some(At {
                value: DurationArg::None,
                span: name.span(),
            });
            continue;
        }
        match (kind, n.as_str()) {
            (_, "using") => {
                if let Some(s) = str_value(cx, &name, v) {
                    if args.using.iter().any(|(k, _)| *k == kind) {
                        cx.error_at(
                            name.span(),
                            "duplicate argument `using`: remove one of them",
                        );
                    } else {
                        args.using.push((
                            kind,
                            At {
                                value: s.value(),
                                span: s.span(),
                            },
                        ));
                    }
                }
            }
            (_, "crate") => {
                if let Some(s) = str_value(cx, &name, v) {
                    match s.parse::<syn::Path>() {
                        Ok(p) => set_once(cx, &mut args.krate, p, &name),
                        Err(_) => cx.error_spanned_by(
                            &s,
                            "`crate` takes a path, as in `crate = \"my_pglock\"`",
                        ),
                    }
                }
            }
            (Kind::AdvisoryLock, "key") => match v {
                Some(e) => set_once(cx, &mut args.key, e.clone(), &name),
                None => cx.error_spanned_by(
                    &name,
                    "`key` needs a value, as in `key = (\"invoice\", id)`",
                ),
            },
            (Kind::AdvisoryLock, "shared") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.shared, b, &name);
                }
            }
            (Kind::AdvisoryLock, "xact") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.xact, b, &name);
                }
            }
            (Kind::AdvisoryLock, "timeout") => {
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.timeout, d, &name);
                }
            }
            (Kind::AdvisoryLock, "on_fail") => {
                if let Some(id) = ident_value(cx, &name, v, &["raise", "skip"]) {
                    let f = if id == "skip" {
                        OnFail::Skip
                    } else {
                        OnFail::Raise
                    };
                    set_once(cx, &mut args.on_fail, f, &name);
                }
            }
            (Kind::AdvisoryLock, "on_lost") => {
                if let Some(id) = ident_value(cx, &name, v, &["report", "cancel"]) {
                    let f = if id == "cancel" {
                        OnLost::Cancel
                    } else {
                        OnLost::Report
                    };
                    set_once(cx, &mut args.on_lost, f, &name);
                }
            }
            (Kind::AdvisoryLock, "hash") => {
                if let Some(id) = ident_value(
                    cx,
                    &name,
                    v,
                    &[
                        "django_pglock",
                        "django_pglocks",
                        "django_pglocks_v1",
                        "postgres_lock",
                        "sqlx",
                    ],
                ) {
                    set_once(cx, &mut args.hash, id, &name);
                }
            }
            (Kind::Prioritize, "interval") => {
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.interval, d, &name);
                }
            }
            (Kind::Prioritize, "min_blocker_age") => {
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.min_blocker_age, d, &name);
                }
            }
            (Kind::Prioritize, "timeout") => {
                if let Some(d) = duration_value(cx, &name, v) {
                    set_once(cx, &mut args.prioritize_timeout, d, &name);
                }
            }
            (Kind::Prioritize, "periodic") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.periodic, b, &name);
                }
            }
            (Kind::Prioritize, "dry_run") => {
                if let Some(b) = flag(cx, &name, v) {
                    set_once(cx, &mut args.dry_run, b, &name);
                }
            }
            (Kind::Prioritize, "action") => {
                if let Some(id) = ident_value(cx, &name, v, &["terminate", "cancel"]) {
                    set_once(cx, &mut args.action, id, &name);
                }
            }
            (Kind::Prioritize, "max_kills") => match v {
                Some(Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Int(i),
                    ..
                })) => match i.base10_parse::<u32>() {
                    Ok(n) if n > 0 => set_once(cx, &mut args.max_kills, n, &name),
                    _ => cx.error_spanned_by(i, "`max_kills` must be a whole number of at least 1"),
                },
                other => cx.error_spanned_by(
                    other.map_or_else(
                        || name.to_token_stream_owned(),
                        quote::ToTokens::to_token_stream,
                    ),
                    "`max_kills` takes a whole number, as in `max_kills = 3`",
                ),
            },
            _ => {
                let valid = kind
                    .valid()
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let hint = if kind == Kind::LockTimeout {
                    " (and a duration as the first argument, as in `#[lock_timeout(\"5s\")]`)"
                } else {
                    ""
                };
                cx.error_spanned_by(
                    &name,
                    format!(
                        "unknown argument `{n}` for `#[{}]`; expected one of {valid}{hint}",
                        kind.name()
                    ),
                );
            }
        }
    }
    if kind == Kind::LockTimeout && !lock_timeout_seen {
        cx.error_at(
            attr_span,
            "`#[lock_timeout]` needs a duration, as in `#[lock_timeout(\"5s\")]`, or `none` for no limit",
        );
    }
}
