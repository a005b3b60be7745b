//! `#[stampede::flaky(max_runs = N, min_passes = M)]`: turn a `#[test]` fn
//! into one that reruns its body until it has passed M times, or gives up once
//! M passes are out of reach.
//!
//! The test keeps its name and attributes; its body moves into a nested fn of
//! the same name (so backtraces read `my_test::my_test`), which the runtime in
//! `::stampede::__private::flaky` calls once per attempt.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote, quote_spanned};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, ItemFn, Lit, MetaNameValue, ReturnType, Token};

/// Python flaky's defaults: one retry.
const DEFAULT_MAX_RUNS: usize = 2;
const DEFAULT_MIN_PASSES: usize = 1;

/// The attribute's arguments once checked.
struct Settings {
    max_runs: usize,
    min_passes: usize,
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let func = syn::parse2::<ItemFn>(item)
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                "#[stampede::flaky] goes on a test function: write it above `#[test]` on a plain \
                 `fn`",
            )
        })
        .and_then(|func| check(&func).map(|()| func));
    let (settings, func) = both(parse_settings(args), func)?;

    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let name = &sig.ident;
    let output = &sig.output;
    let (max_runs, min_passes) = (settings.max_runs, settings.min_passes);
    // Spanned on the return type, so that an unsupported one is reported there.
    let output_span = match output {
        ReturnType::Default => name.span(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let call = quote_spanned! {output_span=>
        ::stampede::__private::flaky::run_test(#max_runs, #min_passes, #name)
    };
    Ok(quote! {
        #(#attrs)*
        #vis fn #name() {
            fn #name() #output #block
            #call
        }
    })
}

/// Parses `max_runs = N, min_passes = M` (both optional, in any order),
/// reporting every bad key and value at once.
fn parse_settings(args: TokenStream) -> syn::Result<Settings> {
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated
        .parse2(args)
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                "#[stampede::flaky] takes `key = value` pairs; write \
                 `#[stampede::flaky(max_runs = 3, min_passes = 2)]` (both keys optional)",
            )
        })?;

    let mut errors = Errors::default();
    let mut max_runs: Option<(usize, &Expr)> = None;
    let mut min_passes: Option<(usize, &Expr)> = None;
    for pair in &pairs {
        let key = pair
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let slot = match key.as_str() {
            "max_runs" => &mut max_runs,
            "min_passes" => &mut min_passes,
            _ => {
                errors.push(
                    &pair.path,
                    "unknown key for #[stampede::flaky]; the keys are `max_runs` and `min_passes`",
                );
                continue;
            }
        };
        if slot.is_some() {
            errors.push(
                &pair.path,
                &format!("`{key}` is given twice; keep one `{key} = ..`"),
            );
            continue;
        }
        match usize_literal(&pair.value) {
            Some(n) => *slot = Some((n, &pair.value)),
            None => errors.push(
                &pair.value,
                &format!("`{key}` takes a positive integer literal; write e.g. `{key} = 3`"),
            ),
        }
    }

    if let Some((0, value)) = max_runs {
        errors.push(
            value,
            "`max_runs = 0` would never run the test; write `max_runs = 1` or more",
        );
    }
    if let Some((0, value)) = min_passes {
        errors.push(
            value,
            "`min_passes = 0` would pass the test without running it; write `min_passes = 1` \
             or more",
        );
    }
    // `max_runs = 0` has its own error above; `min_passes = 0` is never too many.
    match (min_passes, max_runs) {
        (Some((min, value)), Some((max, _))) if max > 0 && min > max => errors.push(
            value,
            &format!(
                "`min_passes = {min}` is more than `max_runs = {max}`, so the test could never \
                 pass; raise `max_runs` to at least {min}, or lower `min_passes`"
            ),
        ),
        (Some((min, value)), None) if min > DEFAULT_MAX_RUNS => errors.push(
            value,
            &format!(
                "`min_passes = {min}` is more than `max_runs`, which defaults to \
                 {DEFAULT_MAX_RUNS}, so the test could never pass; add `max_runs = {min}` or more"
            ),
        ),
        _ => {}
    }
    errors.finish()?;
    Ok(Settings {
        max_runs: max_runs.map_or(DEFAULT_MAX_RUNS, |(n, _)| n),
        min_passes: min_passes.map_or(DEFAULT_MIN_PASSES, |(n, _)| n),
    })
}

/// The value of an integer literal (suffixed or not) that fits `usize`.
fn usize_literal(value: &Expr) -> Option<usize> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => int.base10_parse().ok(),
        _ => None,
    }
}

/// Checks that `func` is a test function libtest can call, reporting every
/// misuse at once, each spanned on its culprit.
fn check(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let mut errors = Errors::default();

    if !func.attrs.iter().any(is_test_attr) {
        errors.push(
            &sig.ident,
            "#[stampede::flaky] needs `#[test]` below it, and this fn has none there: write \
             `#[stampede::flaky(..)]` above `#[test]` (attributes apply from the top down, \
             so flaky must come first)",
        );
    }
    if let Some(attr) = func
        .attrs
        .iter()
        .find(|a| a.path().is_ident("should_panic"))
    {
        errors.push(
            attr,
            "#[stampede::flaky] cannot be combined with `#[should_panic]`: a panic is what a \
             flaky test retries; catch the expected panic in the body with \
             `std::panic::catch_unwind` and assert on it",
        );
    }
    if let Some(token) = &sig.asyncness {
        errors.push(
            token,
            "#[stampede::flaky] cannot be `async`: libtest calls a plain `fn`; make it a plain \
             `fn` that builds its own runtime (e.g. `Runtime::new()?.block_on(..)`)",
        );
    }
    if let Some(token) = &sig.constness {
        errors.push(
            token,
            "#[stampede::flaky] cannot be `const`: remove `const`",
        );
    }
    if let Some(token) = &sig.unsafety {
        errors.push(
            token,
            "#[stampede::flaky] cannot be `unsafe`: a test is a safe `fn`; put the unsafe \
             code in an `unsafe { .. }` block inside it",
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(
            abi,
            "#[stampede::flaky] cannot have an `extern` ABI: write a plain `fn`",
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let (generics, clause) = (&sig.generics, &sig.generics.where_clause);
        errors.push(
            &quote!(#generics #clause),
            "#[stampede::flaky] cannot be generic: libtest calls a test with no type \
             arguments; write a non-generic `fn`",
        );
    }
    if !sig.inputs.is_empty() || sig.variadic.is_some() {
        let (inputs, variadic) = (&sig.inputs, &sig.variadic);
        errors.push(
            &quote!(#inputs #variadic),
            "#[stampede::flaky] goes on a test, which takes no arguments: remove them and \
             build the values inside the body",
        );
    }
    errors.finish()
}

/// `#[test]`, or a path to the built-in attribute such as
/// `#[core::prelude::v1::test]`.
fn is_test_attr(attr: &Attribute) -> bool {
    let segments = &attr.path().segments;
    segments.last().is_some_and(|s| s.ident == "test")
        && (segments.len() == 1
            || segments
                .iter()
                .any(|s| s.ident == "core" || s.ident == "std"))
}

/// Errors gathered so that the user sees every misuse in one build.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error spanned on the culprit's first and last tokens, so that
    /// the whole of it is underlined.
    fn push(&mut self, culprit: &dyn ToTokens, message: &str) {
        let error = syn::Error::new_spanned(culprit, message);
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Err` with every error pushed, or `Ok` if there was none.
    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Both values, or the errors of both.
fn both<A, B>(a: syn::Result<A>, b: syn::Result<B>) -> syn::Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(mut a), Err(b)) => {
            a.combine(b);
            Err(a)
        }
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
    }
}
