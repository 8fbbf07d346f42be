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
use crate::valid::{self, Checked, Slot};

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
    let is_async = func.sig.asyncness.is_some() || returned_future(&mut func).is_some();
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
    /// The fake return edge (`if false { let x: R = loop {}; return x; }`).
    FakeReturn,
}

fn allow(site: Allow) -> TokenStream {
    match site {
        Allow::Exit => quote!(#[allow(unreachable_code, clippy::needless_return)]),
        Allow::FakeReturn => quote! {
            #[allow(
                unknown_lints,
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
        match &a.slot {
            Some(Slot::Every(n)) => {
                let n = nanos(*n);
                p.extend(quote!(.once_per(#n)));
            }
            // Spanned like the key: a type without `ToSlot` is reported on it.
            Some(Slot::Expr(e)) => {
                let e = quote_spanned!(e.span()=> &(#e));
                p.extend(quote!(.slot(#private::slot(#e))));
            }
            None => {}
        }
        if a.retry {
            p.extend(quote!(.retry()));
        }
        if a.fenced {
            p.extend(quote!(.fenced()));
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
        if pr.signal_superusers {
            w.extend(quote!(.signal_superusers(true)));
        }
        if pr.any_database {
            w.extend(quote!(.any_database(true)));
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

/// The runtime function an `async` call goes through.
fn skip_or_raise(c: &Checked) -> TokenStream {
    match (c.on_fail, c.raise_errors) {
        (OnFail::Raise, _) => quote!(raise),
        (OnFail::Skip, false) => quote!(skip),
        (OnFail::Skip, true) => quote!(skip_or_raise),
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

    if let Some(inner) = returned_future(&mut func) {
        // A plain function returning a future (as `#[async_trait]` makes of an
        // `async fn`): wrap that inner future. Its output type is not written
        // anywhere we can see, so it is inferred.
        let run = skip_or_raise(c);
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
        let run = skip_or_raise(c);
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
        } else if c.raise_errors {
            (quote!(enter_skip_or_raise), quote!(exit_skip))
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

/// The block of the future a plain function returns, when its body ends in one:
/// `Box::pin(async move { … })` (what `#[async_trait]` produces) or `async move {
/// … }` (a `-> impl Future` function). The lock must be held while that future
/// runs, not while it is built (tracing-attributes does the same).
fn returned_future(func: &mut ItemFn) -> Option<&mut Block> {
    if func.sig.asyncness.is_some() {
        return None;
    }
    let Some(Stmt::Expr(last, None)) = func.block.stmts.last_mut() else {
        return None;
    };
    let fut = match ungroup(last) {
        Expr::Call(call) => {
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
            ungroup(call.args.first_mut()?)
        }
        e => e,
    };
    match fut {
        Expr::Async(a) if a.capture.is_some() => Some(&mut a.block),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(kind: Kind, args: TokenStream, item: TokenStream) -> String {
        expand(kind, args, item).to_string()
    }

    /// The `Plan` expression of an expansion, whatever attribute expanded it.
    fn plan_of(out: &str) -> &str {
        let start = out.find("let __pglock_plan =").expect("a plan");
        let end = out[start..].find(';').expect("end of the plan") + start;
        out[start..end].trim_end()
    }

    #[test]
    fn not_a_function() {
        let out = expand_str(
            Kind::AdvisoryLock,
            quote!(),
            quote!(
                struct S;
            ),
        );
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(out.contains("can only be used on functions"));
        assert!(out.ends_with("struct S ;"), "{out}");
    }

    #[test]
    fn a_body_that_does_not_parse_is_given_back_untouched() {
        let item = quote!(async fn f() -> Result<(), E> { let x = ; Ok(()) });
        assert_eq!(
            expand(Kind::AdvisoryLock, quote!(timeout = "bad"), item.clone()).to_string(),
            item.to_string()
        );
    }

    #[test]
    fn errors_still_emit_the_function() {
        let out = expand_str(
            Kind::AdvisoryLock,
            quote!(hash = md5, colour = 1),
            quote! {
                #[lock_timeout(0)]
                async fn f() -> Result<(), E> { Ok(()) }
            },
        );
        assert_eq!(out.matches("compile_error").count(), 3, "{out}");
        // The function as written, the collected attribute left as an inert marker.
        assert!(out.contains("# [lock_timeout (__pglock_collected)] async fn f () -> Result < () , E > { Ok (()) }"), "{out}");
    }

    #[test]
    fn a_collected_marker_expands_to_the_item() {
        let item = quote!(
            fn f() {}
        );
        assert_eq!(
            expand(Kind::LockTimeout, quote!(__pglock_collected), item.clone()).to_string(),
            item.to_string()
        );
        // Only the marker alone is one.
        let out = expand_str(
            Kind::LockTimeout,
            quote!(__pglock_collected, x),
            quote!(
                fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        assert!(out.contains("compile_error"), "{out}");
    }

    #[test]
    fn written_order_never_changes_meaning() {
        let body = quote!(
            async fn f(id: i64) -> Result<(), E> {
                Ok(())
            }
        );
        let first = expand_str(
            Kind::AdvisoryLock,
            quote!(key = id, timeout = 0),
            quote!(#[pglock_runtime::lock_timeout("5s")] #[prioritize(interval = "2s")] #body),
        );
        let second = expand_str(
            Kind::Prioritize,
            quote!(interval = "2s"),
            quote!(#[lock_timeout("5s")] #[advisory_lock(key = id, timeout = 0)] #body),
        );
        let third = expand_str(
            Kind::LockTimeout,
            quote!("5s"),
            quote!(#[advisory_lock(key = id, timeout = 0)] #[prioritize(interval = "2s")] #body),
        );
        assert_eq!(plan_of(&first), plan_of(&second));
        assert_eq!(plan_of(&first), plan_of(&third));
        let plan = plan_of(&first);
        for part in [
            ". advisory (:: pglock_runtime :: __private :: key (& (id) , :: pglock_runtime :: __private :: KeyHash :: DjangoPglock))",
            ". timeout (:: core :: option :: Option :: Some (:: core :: time :: Duration :: from_nanos (0u64)))",
            ". lock_timeout (:: core :: option :: Option :: Some (:: core :: time :: Duration :: from_nanos (5000000000u64)))",
            ". prioritize (:: pglock_runtime :: __private :: Prioritize :: new () . interval (:: core :: time :: Duration :: from_nanos (2000000000u64)))",
        ] {
            assert!(plan.contains(part), "{part} not in {plan}");
        }
        assert!(
            first.contains("# [pglock_runtime :: lock_timeout (__pglock_collected)]"),
            "{first}"
        );
        assert!(
            first.contains("# [prioritize (__pglock_collected)]"),
            "{first}"
        );
    }

    #[test]
    fn plan_for_every_argument() {
        let out = expand_str(
            Kind::AdvisoryLock,
            quote!(
                shared,
                xact,
                timeout = none,
                on_lost = cancel,
                using = "reports",
                hash = postgres_lock,
                crate = "my::pg"
            ),
            quote!(
                #[prioritize(action = cancel, periodic = false, min_blocker_age = "5s", max_kills = 2, dry_run, timeout = "1m")]
                async fn job() -> Result<(), E> {
                    Ok(())
                }
            ),
        );
        let plan = plan_of(&out);
        assert!(plan.starts_with(
            "let __pglock_plan = my :: pg :: __private :: Plan :: new (:: core :: concat ! (:: core :: module_path ! () , \"::\" , \"job\")) . using (\"reports\") . advisory (my :: pg :: __private :: key (:: core :: concat ! (:: core :: module_path ! () , \"::\" , \"job\") , my :: pg :: __private :: KeyHash :: PostgresLock)) . shared () . xact () . timeout (:: core :: option :: Option :: None) . on_lost_cancel ()"
        ), "{plan}");
        assert!(plan.ends_with(
            ". prioritize (my :: pg :: __private :: Prioritize :: new () . periodic (false) . action (my :: pg :: __private :: PrioritizeAction :: Cancel) . min_blocker_age (:: core :: time :: Duration :: from_nanos (5000000000u64)) . max_kills (2u32) . dry_run (true) . timeout (:: core :: option :: Option :: Some (:: core :: time :: Duration :: from_nanos (60000000000u64))))"
        ), "{plan}");
        assert!(
            out.contains("my :: pg :: __private :: raise :: < Result < () , E > , _ >"),
            "{out}"
        );
    }

    #[test]
    fn async_body_is_an_async_move_block_after_the_fake_return() {
        let out = expand_str(
            Kind::AdvisoryLock,
            quote!(on_fail = skip),
            quote! {
                #[must_use]
                pub async fn f(&self) -> Option<impl Display> {
                    #![allow(unused)]
                    let x = 1;
                    Some(x)
                }
            },
        );
        assert!(out.starts_with("# [must_use] pub async fn f (& self) -> Option < impl Display > { # ! [allow (unused)] let __pglock_plan"), "{out}");
        assert!(out.contains(":: pglock_runtime :: __private :: skip :: < Option < _ > , _ > (__pglock_plan , async move {"), "{out}");
        assert!(out.contains("if false { let __pglock_fake_return : Option < _ > = loop { } ; return __pglock_fake_return ; } { let x = 1 ; Some (x) } }) . await }"), "{out}");
    }

    #[test]
    fn sync_body_leaves_through_the_scope() {
        let out = expand_str(
            Kind::AdvisoryLock,
            quote!(xact),
            quote! {
                fn f(flag: bool) -> Result<u8, E> {
                    if flag {
                        return Ok(1);
                    }
                    let c = || { return 2; };
                    let a = async { return 3; };
                    fn inner() -> u8 { return 4; }
                    Ok(c() + inner())
                }
            },
        );
        assert!(out.contains("let __pglock_scope = match :: pglock_runtime :: __private :: enter_raise :: < Result < u8 , E > > (__pglock_plan) { :: core :: result :: Result :: Ok (__pglock_entered) => __pglock_entered , :: core :: result :: Result :: Err (__pglock_early) => return __pglock_early , } ;"), "{out}");
        assert!(
            out.contains("return __pglock_scope . exit_raise :: < Result < u8 , E > > (Ok (1)) ;"),
            "{out}"
        );
        assert_eq!(out.matches("exit_raise").count(), 2, "{out}");
        assert!(
            out.contains("return 2 ;") && out.contains("return 3 ;") && out.contains("return 4 ;"),
            "{out}"
        );
        assert!(
            out.contains("let __pglock_value : Result < u8 , E > = {"),
            "{out}"
        );
        assert!(out.ends_with("# [allow (unreachable_code , clippy :: needless_return)] return __pglock_scope . exit_raise :: < Result < u8 , E > > (__pglock_value) ; }"), "{out}");
    }

    #[test]
    fn sync_skip_without_return_type() {
        let out = expand_str(
            Kind::AdvisoryLock,
            quote!(on_fail = skip),
            quote!(
                fn f() {
                    if true {
                        return;
                    }
                }
            ),
        );
        assert!(out.contains("enter_skip :: < () >"), "{out}");
        assert!(
            out.contains("return __pglock_scope . exit_skip :: < () > (()) ;"),
            "{out}"
        );
    }

    #[test]
    fn async_trait_shape_wraps_the_inner_future() {
        let out = expand_str(
            Kind::AdvisoryLock,
            quote!(key = id),
            quote! {
                fn run<'a>(&'a self, id: i64) -> Pin<Box<dyn Future<Output = Result<u8, E>> + Send + 'a>> {
                    Box::pin(async move {
                        let __self = self;
                        let __ret: Result<u8, E> = { Ok(1) };
                        __ret
                    })
                }
            },
        );
        assert!(out.contains("Box :: pin (async move { let __pglock_plan = :: pglock_runtime :: __private :: Plan :: new"), "{out}");
        assert!(
            out.contains("__private :: raise (__pglock_plan , async move { let __self = self ;"),
            "{out}"
        );
        assert!(out.ends_with(". await }) }"), "{out}");
    }

    #[test]
    fn async_trait_shape_needs_box_pin_of_async_move() {
        let mut f: ItemFn = syn::parse_quote!(
            fn f() -> X {
                Box::pin(async { 1 })
            }
        );
        assert!(returned_future(&mut f).is_none());
        let mut f: ItemFn = syn::parse_quote!(
            fn f() -> X {
                Rc::pin(async move { 1 })
            }
        );
        assert!(returned_future(&mut f).is_none());
        let mut f: ItemFn = syn::parse_quote!(
            async fn f() -> X {
                Box::pin(async move { 1 })
            }
        );
        assert!(returned_future(&mut f).is_none());
        let mut f: ItemFn = syn::parse_quote!(
            fn f() -> X {
                ::std::boxed::Box::pin((async move { 1 }))
            }
        );
        assert!(returned_future(&mut f).is_some());
    }

    #[test]
    fn return_types_as_written_in_the_body() {
        let sig: Signature = syn::parse_quote!(fn f() -> Result<Vec<impl Display>, impl Error>);
        assert_eq!(return_type(&sig).to_string(), "Result < Vec < _ > , _ >");
        let sig: Signature = syn::parse_quote!(fn f(&self) -> &'static str);
        assert_eq!(return_type(&sig).to_string(), "& 'static str");
        let sig: Signature = syn::parse_quote!(fn f());
        assert_eq!(return_type(&sig).to_string(), "()");
    }
}
