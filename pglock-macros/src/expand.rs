//! Code generation: build a `Plan` value and hand the body to one runtime
//! function. SQL, retries and timing all live in the runtime.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::visit_mut::VisitMut;
use syn::{Block, Expr, ItemFn, ReturnType, Stmt};

use crate::attr::{self, Args, Kind, OnFail};
use crate::ctxt::Ctxt;
use crate::duration::DurationArg;
use crate::valid::{self, Checked};

/// The argument a collected attribute is left with: it then expands to the item
/// unchanged. Leaving it in place (rather than removing it) keeps its path
/// resolved, so `use pglock_runtime::advisory_lock;` is not reported unused.
const COLLECTED: &str = "__pglock_collected";

/// Entry point shared by the three attributes.
pub(crate) fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    if args.to_string() == COLLECTED {
        return item;
    }
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                format!("`#[{}]` can only be used on functions", kind.name()),
            )
            .to_compile_error();
            return quote!(#e #item);
        }
    };
    let cx = Ctxt::default();
    let mut all = Args::default();
    attr::parse_into(&cx, &mut all, kind, args, Span::call_site());
    // Collect the other pglock attributes of this function: whichever expands
    // first generates for all of them, so written order never changes meaning.
    let mut rest = Vec::with_capacity(func.attrs.len());
    for a in std::mem::take(&mut func.attrs) {
        match valid::pglock_kind(&a) {
            Some(_) if matches!(&a.meta, syn::Meta::List(l) if l.tokens.to_string() == COLLECTED) =>
            {
                rest.push(a);
            }
            Some(k) => {
                let path = a.path().clone();
                let marker = syn::Ident::new(COLLECTED, Span::call_site());
                rest.push(syn::parse_quote!(#[#path(#marker)]));
                let tokens = match &a.meta {
                    syn::Meta::List(l) => l.tokens.clone(),
                    syn::Meta::Path(_) => TokenStream::new(),
                    syn::Meta::NameValue(nv) => {
                        cx.error_spanned_by(nv, format!("write `#[{}(…)]`", k.name()));
                        continue;
                    }
                };
                let name_span = a
                    .path()
                    .segments
                    .last()
                    .map_or_else(Span::call_site, |s| s.ident.span());
                attr::parse_into(&cx, &mut all, k, tokens, name_span);
            }
            None => rest.push(a),
        }
    }
    func.attrs = rest;
    match valid::check(&cx, all, &func) {
        Some(checked) if !cx.has_errors() => generate(&checked, func),
        _ => {
            // Always emit the function, so that the rest of the crate (and
            // rust-analyzer) keeps working while the arguments are fixed.
            let errors = cx.into_compile_errors();
            quote!(#errors #func)
        }
    }
}

/// The narrow set of lints generated code must not trigger in user crates.
fn allows() -> TokenStream {
    quote!(#[allow(unused_qualifications, clippy::all, clippy::pedantic, clippy::nursery)])
}

fn duration(d: Option<DurationArg>) -> TokenStream {
    match d {
        None | Some(DurationArg::None) => quote!(::core::option::Option::None),
        Some(DurationArg::Nanos(n)) => {
            quote!(::core::option::Option::Some(::core::time::Duration::from_nanos(#n)))
        }
    }
}

fn plan(c: &Checked, func: &ItemFn) -> TokenStream {
    let krate = &c.krate;
    let name = func.sig.ident.to_string();
    let mut p = quote! {
        #krate::__private::Plan::new(::core::concat!(::core::module_path!(), "::", #name))
    };
    if let Some(alias) = &c.alias {
        p.extend(quote!(.using(#alias)));
    }
    if let Some(a) = &c.advisory {
        let hash = format_ident!("{}", a.hash);
        let key = match &a.key {
            Some(k) => quote_spanned!(syn::spanned::Spanned::span(k)=> &(#k)),
            None => quote!(::core::concat!(::core::module_path!(), "::", #name)),
        };
        p.extend(quote! {
            .advisory(#krate::__private::key(#key, #krate::__private::KeyHash::#hash))
        });
        if a.shared {
            p.extend(quote!(.shared()));
        }
        if a.xact {
            p.extend(quote!(.xact()));
        }
        if let Some(t) = a.timeout {
            let t = duration(Some(t));
            p.extend(quote!(.timeout(#t)));
        }
        if a.cancel_on_lost {
            p.extend(quote!(.on_lost_cancel()));
        }
    }
    if let Some(t) = c.lock_timeout {
        let t = duration(Some(t));
        p.extend(quote!(.lock_timeout(#t)));
    }
    if let Some(pr) = &c.prioritize {
        let mut w = quote!(#krate::__private::Prioritize::new());
        if let Some(i) = pr.interval {
            let i = duration(Some(i));
            w.extend(quote!(.interval(::core::option::Option::unwrap_or_default(#i))));
        }
        if let Some(b) = pr.periodic {
            w.extend(quote!(.periodic(#b)));
        }
        if pr.cancel {
            w.extend(quote!(.action(#krate::__private::PrioritizeAction::Cancel)));
        }
        if let Some(m) = pr.min_blocker_age {
            let m = duration(Some(m));
            w.extend(quote!(.min_blocker_age(::core::option::Option::unwrap_or_default(#m))));
        }
        if let Some(n) = pr.max_kills {
            w.extend(quote!(.max_kills(#n)));
        }
        if pr.dry_run {
            w.extend(quote!(.dry_run(true)));
        }
        if let Some(t) = pr.timeout {
            let t = duration(Some(t));
            w.extend(quote!(.timeout(#t)));
        }
        p.extend(quote!(.prioritize(#w)));
    }
    p
}

fn generate(c: &Checked, mut func: ItemFn) -> TokenStream {
    let krate = &c.krate;
    let plan = plan(c, &func);
    let allows = allows();
    let plan_ident = Ident::new("__pglock_plan");
    let raise = c.on_fail == OnFail::Raise;
    let run = if raise { quote!(raise) } else { quote!(skip) };
    // Type errors about the return type point at the declared return type: every
    // token of the called path carries its span (a path's span is its first token's).
    let run_fn = respan(quote!(#krate::__private::#run), c.return_span);

    if let Some(inner) = async_trait_body(&mut func.block) {
        // `#[async_trait]` has already turned the method into a function returning
        // `Box::pin(async move { … })`: wrap that inner future.
        let body = std::mem::replace(inner, syn::parse_quote!({}));
        *inner = syn::parse_quote! {{
            #allows
            let #plan_ident = #plan;
            #run_fn(#plan_ident, async move #body).await
        }};
        return func.into_token_stream();
    }

    // Inner attributes (`#![allow(..)]`) are in `func.attrs`; `ItemFn` prints them
    // first inside the new body.
    let stmts = std::mem::take(&mut func.block.stmts);
    // The user's body keeps a block of its own (tracing #3306).
    let body = Block {
        brace_token: func.block.brace_token,
        stmts,
    };
    if func.sig.asyncness.is_some() {
        let fake = fake_return(&func.sig.output);
        func.block = Box::new(syn::parse_quote! {{
            #allows
            let #plan_ident = #plan;
            #run_fn(#plan_ident, async move {
                #fake
                #body
            })
            .await
        }});
        return func.into_token_stream();
    }

    // A plain function: an RAII scope, no closure around the body. Every `return`
    // of the body leaves through the scope, so an early `return Ok(..)` commits.
    let scope = Ident::new("__pglock_scope");
    let value = Ident::new("__pglock_value");
    let (enter, exit) = if raise {
        (quote!(enter_raise), quote!(exit_raise))
    } else {
        (quote!(enter_skip), quote!(exit_skip))
    };
    let enter_fn = respan(quote!(#krate::__private::#enter), c.return_span);
    let mut body = body;
    ReturnRewriter {
        scope: scope.clone(),
        exit: exit.clone(),
    }
    .visit_block_mut(&mut body);
    func.block = Box::new(syn::parse_quote! {{
        #allows
        let #plan_ident = #plan;
        #allows
        let #scope = match #enter_fn(#plan_ident) {
            ::core::result::Result::Ok(scope) => scope,
            ::core::result::Result::Err(skipped) => return skipped,
        };
        #allows
        let #value = #body;
        // Unreachable when the body always returns early (as `#[tokio::test]`'s
        // expansion does): not the user's concern.
        #[allow(unreachable_code, clippy::needless_return)]
        return #scope.#exit(#value);
    }});
    func.into_token_stream()
}

/// `tokens` with every span set to `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(g) = &tt {
                let mut group = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = proc_macro2::TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// `Span::mixed_site()` identifiers for generated locals.
struct Ident;

impl Ident {
    #[allow(clippy::new_ret_no_self)]
    fn new(name: &str) -> syn::Ident {
        syn::Ident::new(name, Span::mixed_site())
    }
}

/// A statement that makes the async block's output type the declared return type
/// (tracing #2270), so type errors stay on the user's code. Skipped for `impl
/// Trait` returns, which cannot be named.
fn fake_return(ret: &ReturnType) -> TokenStream {
    let ReturnType::Type(_, ty) = ret else {
        return TokenStream::new();
    };
    if ty.to_token_stream().to_string().contains("impl") {
        return TokenStream::new();
    }
    let fake = Ident::new("__pglock_fake_return");
    quote_spanned! {syn::spanned::Spanned::span(&**ty)=>
        #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::let_unit_value, clippy::needless_return)]
        if false {
            let #fake: #ty = ::core::unreachable!();
            return #fake;
        }
    }
}

/// The `async move { … }` block inside `Box::pin(…)` as the last expression of a
/// body, which is what `#[async_trait]` produces.
fn async_trait_body(block: &mut Block) -> Option<&mut Block> {
    let Some(Stmt::Expr(last, None)) = block.stmts.last_mut() else {
        return None;
    };
    let Expr::Call(call) = ungroup(last) else {
        return None;
    };
    let Expr::Path(path) = ungroup(&mut call.func) else {
        return None;
    };
    let segs: Vec<String> = path
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    if segs.len() < 2 || segs[segs.len() - 1] != "pin" || segs[segs.len() - 2] != "Box" {
        return None;
    }
    if call.args.len() != 1 {
        return None;
    }
    match call.args.first_mut().map(ungroup) {
        Some(Expr::Async(a)) => Some(&mut a.block),
        _ => None,
    }
}

/// Looks through the invisible groups and parentheses that tokens produced by
/// another macro arrive in.
fn ungroup(mut e: &mut Expr) -> &mut Expr {
    loop {
        match e {
            Expr::Group(g) => e = &mut g.expr,
            Expr::Paren(p) => e = &mut p.expr,
            _ => return e,
        }
    }
}

/// Rewrites `return e` into `return scope.exit(e)` outside closures, async blocks
/// and nested items.
struct ReturnRewriter {
    scope: syn::Ident,
    exit: TokenStream,
}

impl VisitMut for ReturnRewriter {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Closure(_) | Expr::Async(_) => {}
            Expr::Return(r) => {
                if let Some(inner) = r.expr.as_mut() {
                    self.visit_expr_mut(inner);
                }
                let (scope, exit) = (&self.scope, &self.exit);
                let value = match r.expr.take() {
                    Some(v) => quote!(#v),
                    None => quote!(()),
                };
                r.expr = Some(Box::new(syn::parse_quote!(#scope.#exit(#value))));
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}
