//! Code generation: build a `Plan` value and hand the body to one runtime
//! function. SQL, retries and timing all live in the runtime.

use proc_macro2::{Delimiter, Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Attribute, Block, Expr, ItemFn, ReturnType, Signature, Stmt, Type, Visibility};

use crate::attr::{self, Args, Kind, OnFail};
use crate::ctxt::Ctxt;
use crate::duration::DurationArg;
use crate::valid::{self, Checked};

/// The argument a collected attribute is left with: it then expands to the item
/// unchanged. Leaving it in place (rather than removing it) keeps its path
/// resolved, so `use pglock_runtime::advisory_lock;` is not reported unused.
const COLLECTED: &str = "__pglock_collected";

/// `#[advisory_lock(…)]`
pub(crate) fn advisory_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::AdvisoryLock, args, item)
}

/// `#[lock_timeout(…)]`
pub(crate) fn lock_timeout(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::LockTimeout, args, item)
}

/// `#[prioritize(…)]`
pub(crate) fn prioritize(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Prioritize, args, item)
}

/// A function whose body may not parse (the user is typing): attributes,
/// visibility, signature, then a brace-delimited group.
struct FnShape;

impl Parse for FnShape {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        input.call(Attribute::parse_outer)?;
        input.parse::<Visibility>()?;
        input.parse::<Signature>()?;
        match input.parse::<TokenTree>()? {
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace && input.is_empty() => {
                Ok(FnShape)
            }
            other => Err(syn::Error::new(other.span(), "expected a function body")),
        }
    }
}

fn expand(kind: Kind, args: TokenStream, item: TokenStream) -> TokenStream {
    if is_collected(&args) {
        return item;
    }
    let mut func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        // A function whose body does not parse yet: give it back untouched, so
        // that rustc reports the syntax error where it is, and nothing else.
        Err(_) if syn::parse2::<FnShape>(item.clone()).is_ok() => return item,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                format!(
                    "`#[{}]` can only be used on functions (a `fn` item with a body)",
                    kind.name()
                ),
            )
            .to_compile_error();
            return quote!(#e #item);
        }
    };
    let cx = Ctxt::default();
    let mut all = Args::default();
    attr::parse_into(&cx, &mut all, kind, args, Span::call_site());
    collect_stacked(&cx, &mut all, &mut func);
    let is_async = func.sig.asyncness.is_some() || async_trait_body(&mut func).is_some();
    match valid::check(&cx, all, &func.sig, is_async) {
        Some(checked) if !cx.has_errors() => generate(&checked, func),
        _ => {
            // Always emit the function, so that the rest of the crate (and
            // rust-analyzer) keeps working while the arguments are fixed.
            let errors = cx.into_compile_errors();
            quote!(#errors #func)
        }
    }
}

fn is_collected(args: &TokenStream) -> bool {
    let mut it = args.clone().into_iter();
    matches!((it.next(), it.next()), (Some(TokenTree::Ident(i)), None) if i == COLLECTED)
}

/// Parses the other pglock attributes of `func` into `all` and leaves inert
/// markers in their place: whichever attribute expands first generates for all
/// of them, so written order never changes meaning.
fn collect_stacked(cx: &Ctxt, all: &mut Args, func: &mut ItemFn) {
    for a in &mut func.attrs {
        let Some(kind) = valid::pglock_kind(a) else {
            continue;
        };
        let tokens = match &a.meta {
            syn::Meta::List(l) if is_collected(&l.tokens) => continue,
            syn::Meta::List(l) => l.tokens.clone(),
            syn::Meta::Path(_) => TokenStream::new(),
            syn::Meta::NameValue(nv) => {
                cx.error_spanned_by(
                    nv.eq_token,
                    format!(
                        "write `#[{}(…)]`, with the arguments in parentheses",
                        kind.name()
                    ),
                );
                TokenStream::new()
            }
        };
        let path = a.path().clone();
        let name_span = path
            .segments
            .last()
            .map_or_else(Span::call_site, |s| s.ident.span());
        attr::parse_into(cx, all, kind, tokens, name_span);
        let marker = syn::Ident::new(COLLECTED, Span::call_site());
        *a = syn::parse_quote_spanned!(a.span()=> #[#path(#marker)]);
    }
}

/// Every `#[allow]` generated code carries, in one place. None of them covers a
/// token of the user's code.
enum Allow {
    /// `return __pglock_scope.exit(__pglock_value);` after a body that always
    /// returns early (as `#[tokio::test]`'s expansion does).
    Exit,
    /// The fake return edge (`if false { return unreachable!() }`).
    FakeReturn,
}

fn allow(site: Allow) -> TokenStream {
    match site {
        Allow::Exit => quote!(#[allow(unreachable_code, clippy::needless_return)]),
        Allow::FakeReturn => quote! {
            #[allow(
                unreachable_code,
                clippy::diverging_sub_expression,
                clippy::empty_loop,
                clippy::let_unit_value,
                clippy::let_with_type_underscore,
                clippy::needless_return
            )]
        },
    }
}

fn duration(d: DurationArg) -> TokenStream {
    match d {
        DurationArg::None => quote!(::core::option::Option::None),
        DurationArg::Nanos(n) => {
            quote!(::core::option::Option::Some(::core::time::Duration::from_nanos(#n)))
        }
    }
}

fn nanos(n: u64) -> TokenStream {
    quote!(::core::time::Duration::from_nanos(#n))
}

/// The `Plan` value describing this function's scope.
fn plan(c: &Checked, name: &str) -> TokenStream {
    let krate = &c.krate;
    let private = quote!(#krate::__private);
    let path = quote!(::core::concat!(::core::module_path!(), "::", #name));
    let mut p = quote!(#private::Plan::new(#path));
    if let Some(alias) = &c.alias {
        p.extend(quote!(.using(#alias)));
    }
    if let Some(a) = &c.advisory {
        let hash = format_ident!("{}", a.hash);
        // The key expression keeps its spans: a type without `ToLockKey` is
        // reported on it.
        let key = match &a.key {
            Some(k) => quote_spanned!(k.span()=> &(#k)),
            None => path,
        };
        p.extend(quote!(.advisory(#private::key(#key, #private::KeyHash::#hash))));
        if a.shared {
            p.extend(quote!(.shared()));
        }
        if a.xact {
            p.extend(quote!(.xact()));
        }
        if let Some(t) = a.timeout {
            let t = duration(t);
            p.extend(quote!(.timeout(#t)));
        }
        if a.cancel_on_lost {
            p.extend(quote!(.on_lost_cancel()));
        }
    }
    if let Some(t) = c.lock_timeout {
        let t = duration(t);
        p.extend(quote!(.lock_timeout(#t)));
    }
    if let Some(pr) = &c.prioritize {
        let mut w = quote!(#private::Prioritize::new());
        if let Some(i) = pr.interval {
            let i = nanos(i);
            w.extend(quote!(.interval(#i)));
        }
        if let Some(b) = pr.periodic {
            w.extend(quote!(.periodic(#b)));
        }
        if pr.cancel {
            w.extend(quote!(.action(#private::PrioritizeAction::Cancel)));
        }
        if let Some(m) = pr.min_blocker_age {
            let m = nanos(m);
            w.extend(quote!(.min_blocker_age(#m)));
        }
        if let Some(n) = pr.max_kills {
            w.extend(quote!(.max_kills(#n)));
        }
        if pr.dry_run {
            w.extend(quote!(.dry_run(true)));
        }
        if let Some(t) = pr.timeout {
            let t = duration(t);
            w.extend(quote!(.timeout(#t)));
        }
        p.extend(quote!(.prioritize(#w)));
    }
    p
}

/// `Span::mixed_site()` identifiers for generated locals: they never see, nor
/// shadow, the user's.
fn local(name: &str) -> syn::Ident {
    syn::Ident::new(name, Span::mixed_site())
}

/// The declared return type as generated code can write it inside the body:
/// `impl Trait` becomes `_` (tracing's `erase_impl_trait`), no return type `()`.
fn return_type(sig: &Signature) -> TokenStream {
    struct EraseImplTrait;
    impl VisitMut for EraseImplTrait {
        fn visit_type_mut(&mut self, t: &mut Type) {
            if let Type::ImplTrait(i) = t {
                *t = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](i.span()),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, t);
            }
        }
    }
    match &sig.output {
        ReturnType::Default => quote_spanned!(sig.ident.span()=> ()),
        ReturnType::Type(_, ty) => {
            let mut ty = (**ty).clone();
            EraseImplTrait.visit_type_mut(&mut ty);
            ty.into_token_stream()
        }
    }
}

/// `tokens` with every span set to `span`, inside groups too.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &tt {
                let mut group = Group::new(g.delimiter(), respan(g.stream(), span));
                group.set_span(span);
                tt = TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

/// A call of `private::<function>` whose trait-bound errors land on the declared
/// return type: the return type is the explicit generic argument (with its own
/// spans), and the other tokens of the call carry its span, so rustc reports one
/// error there, with the runtime trait's message.
struct Call<'a> {
    /// Emitted as is before the path: a method call's receiver (a hygienic local).
    receiver: TokenStream,
    path: TokenStream,
    /// `None` inside `#[async_trait]` methods, whose output type is inferred.
    ret: Option<&'a TokenStream>,
    span: Span,
}

impl Call<'_> {
    /// `path::<R, extra…>(args)`, or `path(args)` without `R`.
    fn call(&self, extra: TokenStream, args: TokenStream) -> TokenStream {
        let mut out = self.receiver.clone();
        out.extend(respan(self.path.clone(), self.span));
        if let Some(ret) = self.ret {
            out.extend(respan(quote!(::<), self.span));
            out.extend(ret.clone());
            out.extend(respan(extra, self.span));
            out.extend(respan(quote!(>), self.span));
        }
        let mut group = Group::new(Delimiter::Parenthesis, args);
        group.set_span(self.span);
        out.extend([TokenTree::Group(group)]);
        out
    }
}

fn generate(c: &Checked, mut func: ItemFn) -> TokenStream {
    let krate = &c.krate;
    let private = quote!(#krate::__private);
    let plan = plan(c, &func.sig.ident.to_string());
    let plan_ident = local("__pglock_plan");
    let raise = c.on_fail == OnFail::Raise;
    let ret_span = match &func.sig.output {
        ReturnType::Default => func.sig.ident.span(),
        ReturnType::Type(_, t) => t.span(),
    };

    if let Some(inner) = async_trait_body(&mut func) {
        // `#[async_trait]` has already turned the method into a plain function
        // returning `Box::pin(async move { … })`: wrap that inner future. Its
        // output type is not written anywhere we can see, so it is inferred.
        let run = if raise { quote!(raise) } else { quote!(skip) };
        let call = Call {
            receiver: TokenStream::new(),
            path: quote!(#private::#run),
            ret: None,
            span: ret_span,
        }
        .call(TokenStream::new(), quote!(#plan_ident, async move #inner));
        *inner = syn::parse_quote! {{
            let #plan_ident = #plan;
            #call.await
        }};
        return func.into_token_stream();
    }

    let ret = return_type(&func.sig);
    // The function keeps its braces; inner attributes (`#![allow(..)]`) stay in
    // `func.attrs`, which `ItemFn` prints first inside them. The user's statements
    // get a block of their own (tracing #3306), with generated braces, so that a
    // one-line body does not trip `unused_braces`.
    let stmts = std::mem::take(&mut func.block.stmts);
    let body = quote!({ #(#stmts)* });

    let new_stmts: TokenStream = if func.sig.asyncness.is_some() {
        let run = if raise { quote!(raise) } else { quote!(skip) };
        let fake = fake_return(&ret, ret_span);
        let call = Call {
            receiver: TokenStream::new(),
            path: quote!(#private::#run),
            ret: Some(&ret),
            span: ret_span,
        }
        .call(
            quote!(, _),
            quote! {
                #plan_ident,
                async move {
                    #fake
                    #body
                }
            },
        );
        let await_ = respan(quote!(.await), ret_span);
        quote! {
            let #plan_ident = #plan;
            #call #await_
        }
    } else {
        // A plain function: an RAII scope, no closure around the body. Every
        // `return` of the body leaves through the scope, so an early `return
        // Ok(..)` commits.
        let scope = local("__pglock_scope");
        let value = local("__pglock_value");
        let entered = local("__pglock_entered");
        let early = local("__pglock_early");
        let (enter, exit) = if raise {
            (quote!(enter_raise), quote!(exit_raise))
        } else {
            (quote!(enter_skip), quote!(exit_skip))
        };
        let enter = Call {
            receiver: TokenStream::new(),
            path: quote!(#private::#enter),
            ret: Some(&ret),
            span: ret_span,
        }
        .call(TokenStream::new(), quote!(#plan_ident));
        let exit = Call {
            receiver: scope.to_token_stream(),
            path: quote!(.#exit),
            ret: Some(&ret),
            span: ret_span,
        };
        let mut body: Block = syn::parse_quote!(#body);
        ReturnRewriter { exit: &exit }.visit_block_mut(&mut body);
        let exit_call = exit.call(TokenStream::new(), quote!(#value));
        let allow_exit = allow(Allow::Exit);
        quote! {
            let #plan_ident = #plan;
            let #scope = match #enter {
                ::core::result::Result::Ok(#entered) => #entered,
                ::core::result::Result::Err(#early) => return #early,
            };
            let #value: #ret = #body;
            #allow_exit
            return #exit_call;
        }
    };
    func.block.stmts = match syn::parse2::<Block>(quote!({ #new_stmts })) {
        Ok(b) => b.stmts,
        Err(e) => return e.to_compile_error(),
    };
    func.into_token_stream()
}

/// A statement that makes the async block's output type the declared return type
/// (tracing #2270), so type errors in the body stay on the user's code.
fn fake_return(ret: &TokenStream, span: Span) -> TokenStream {
    let fake = local("__pglock_fake_return");
    let allow = allow(Allow::FakeReturn);
    quote_spanned! {span=>
        #allow
        if false {
            let #fake: #ret = loop {};
            return #fake;
        }
    }
}

/// The block of the `async move { … }` in `Box::pin(async move { … })` as the
/// last expression of a plain function's body: what `#[async_trait]` produces.
fn async_trait_body(func: &mut ItemFn) -> Option<&mut Block> {
    if func.sig.asyncness.is_some() {
        return None;
    }
    let Some(Stmt::Expr(last, None)) = func.block.stmts.last_mut() else {
        return None;
    };
    let Expr::Call(call) = ungroup(last) else {
        return None;
    };
    let Expr::Path(path) = ungroup(&mut call.func) else {
        return None;
    };
    let mut segs = path.path.segments.iter().rev().map(|s| s.ident.to_string());
    if segs.next().as_deref() != Some("pin") || segs.next().as_deref() != Some("Box") {
        return None;
    }
    if call.args.len() != 1 {
        return None;
    }
    match call.args.first_mut().map(ungroup) {
        Some(Expr::Async(a)) if a.capture.is_some() => Some(&mut a.block),
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

/// Rewrites `return e` into `return __pglock_scope.exit(e)` outside closures,
/// async blocks and nested items, whose `return`s are their own.
struct ReturnRewriter<'a> {
    exit: &'a Call<'a>,
}

impl VisitMut for ReturnRewriter<'_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => {}
            Expr::Return(r) => {
                if let Some(inner) = r.expr.as_mut() {
                    self.visit_expr_mut(inner);
                }
                let value = r.expr.take().map_or_else(
                    || quote_spanned!(r.return_token.span=> ()),
                    ToTokens::into_token_stream,
                );
                let call = self.exit.call(TokenStream::new(), value);
                r.expr = Some(Box::new(syn::parse_quote!(#call)));
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}

    fn visit_type_mut(&mut self, _: &mut Type) {}
}
