//! `#[stampede::function]`: keep the function as written and add a registry
//! entry that a child process finds by the function's path.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};
use syn::ext::IdentExt;
use syn::{FnArg, ItemFn, ReturnType};

/// The most arguments a registered function may take; `stampede::Function`
/// is implemented for each arity up to this one.
const MAX_ARGS: usize = 8;

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    if !args.is_empty() {
        return Err(syn::Error::new_spanned(
            args,
            "#[stampede::function] takes no arguments; write `#[stampede::function]`",
        ));
    }
    let func: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[stampede::function] goes on a plain `fn` item (free function, not a method, \
             closure, struct or module)",
        )
    })?;
    check(&func)?;
    let name = &func.sig.ident;
    // One check per argument type and for the return type, so that a type
    // that is not serde-ready is named and underlined in the error.
    let types = func
        .sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(arg) => Some(&*arg.ty),
            FnArg::Receiver(_) => None,
        })
        .chain(match &func.sig.output {
            ReturnType::Type(_, ty) => Some(&**ty),
            ReturnType::Default => None,
        });
    // The type is the turbofish argument the failing bound is about, so
    // the compiler underlines it (the whole of it) in the error.
    let checks = types.map(|ty| {
        quote! {
            ::stampede::__private::assert_serde::<#ty, _>(
                (&::stampede::__private::Probe::<#ty>::new()).verdict(),
            );
        }
    });
    // Inside an `impl` block the registration cannot find the function by its
    // bare name. The attribute cannot see that context, so the registration is
    // a named const (valid there, unlike `const _`), and its first line names
    // a sibling const whose name is the explanation: at module level it
    // resolves; in an `impl` block it is an associated const, not in scope, so
    // the first error reads "cannot find value
    // `stampede_function_works_on_free_functions_only__move_NAME_out_of_the_impl_block`".
    let unraw = name.unraw();
    let explanation = format_ident!(
        "stampede_function_works_on_free_functions_only__move_{unraw}_out_of_the_impl_block",
        span = name.span()
    );
    let registration = format_ident!("__stampede_register_{unraw}");
    let item = if func.sig.asyncness.is_some() {
        async_wrapper(&func)
    } else {
        func.to_token_stream()
    };
    Ok(quote! {
        #item

        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #explanation: () = ();

        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        const #registration: () = {
            let () = #explanation;
            fn __stampede_name() -> &'static str {
                ::stampede::__private::name_of(&#name)
            }
            fn __stampede_prepare(
                input: &[u8],
            ) -> ::core::result::Result<::stampede::__private::Prepared, ::stampede::__private::String> {
                #[allow(unused_imports)]
                use ::stampede::__private::{
                    Fallback as _, FallbackPrepare as _, ViaFunction as _, ViaSerde as _,
                };
                #(#checks)*
                ::stampede::__private::PrepareProbe(#name).prepare(input)
            }
            ::stampede::__private::inventory::submit! {
                ::stampede::__private::Registration::new(__stampede_name, __stampede_prepare)
            }
        };
    })
}

/// An `async fn` becomes a plain `fn` of the same name, signature and
/// attributes that runs the original body, now a nested `async fn`, to
/// completion on the process's tokio runtime (`::stampede::__private::block_on`,
/// present with stampede-test's `tokio` feature, which turns this crate's on).
fn async_wrapper(func: &ItemFn) -> TokenStream {
    let mut outer = func.sig.clone();
    outer.asyncness = None;
    let mut inner = func.sig.clone();
    inner.ident = format_ident!("__stampede_async_body", span = func.sig.ident.span());
    let inner_name = &inner.ident;
    let mut forwarded = Vec::new();
    for (i, input) in outer.inputs.iter_mut().enumerate() {
        if let FnArg::Typed(arg) = input {
            let name = format_ident!("__stampede_arg{i}");
            *arg.pat = syn::parse_quote!(#name);
            forwarded.push(name);
        }
    }
    let attrs = &func.attrs;
    let vis = &func.vis;
    let block = &func.block;
    let name = func.sig.ident.to_string();
    quote! {
        #(#attrs)*
        #vis #outer {
            #inner #block
            ::stampede::__private::block_on(
                ::core::concat!(::core::module_path!(), "::", #name),
                #inner_name(#(#forwarded),*),
            )
        }
    }
}

/// Collects every misuse at once, each error spanned on its culprit.
fn check(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    let mut errors: Vec<syn::Error> = Vec::new();
    // Spanned on the culprit's first and last tokens, so that the whole of it
    // is underlined.
    let mut fail =
        |culprit: &dyn ToTokens, msg: &str| errors.push(syn::Error::new_spanned(culprit, msg));

    if let (Some(token), false) = (&sig.asyncness, cfg!(feature = "tokio")) {
        fail(
            token,
            "#[stampede::function] on an `async fn` needs a runtime in the child: enable the \
             `tokio` feature of stampede-test (`features = [\"tokio\"]`), or make it a plain \
             `fn` that builds its own runtime",
        );
    }
    if let Some(token) = &sig.constness {
        fail(
            token,
            "#[stampede::function] cannot be `const`: remove `const`, or wrap the const fn in a plain `fn`",
        );
    }
    if let Some(token) = &sig.unsafety {
        fail(
            token,
            "#[stampede::function] cannot be `unsafe`: its caller is a child process that cannot \
             uphold your safety contract; wrap the call in a safe `fn`",
        );
    }
    if let Some(abi) = &sig.abi {
        fail(
            abi,
            "#[stampede::function] cannot have an `extern` ABI: write a plain Rust `fn`",
        );
    }
    if !sig.generics.params.is_empty() {
        fail(
            &sig.generics,
            "#[stampede::function] cannot be generic: a child finds the function by name, and a \
             generic function has no single name; write one non-generic `fn` per type",
        );
    }
    if let Some(clause) = &sig.generics.where_clause {
        fail(
            clause,
            "#[stampede::function] cannot have a `where` clause: write a non-generic `fn`",
        );
    }
    if let Some(variadic) = &sig.variadic {
        fail(
            variadic,
            "#[stampede::function] cannot be variadic: take a `Vec` or a tuple instead of `...`",
        );
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => fail(
                receiver,
                "#[stampede::function] cannot take `self`: a child has no receiver to call it on; \
                 write a free `fn` that takes the value as an ordinary argument",
            ),
            FnArg::Typed(arg) => {
                if let syn::Type::ImplTrait(imp) = &*arg.ty {
                    fail(
                        imp,
                        "#[stampede::function] cannot take `impl Trait`: name a concrete type that \
                         is `Serialize + DeserializeOwned`",
                    );
                }
                if let syn::Type::Reference(r) = &*arg.ty {
                    fail(
                        r,
                        "#[stampede::function] cannot take a reference: arguments travel to another \
                         process; take an owned type (`String` for `&str`, `Vec<T>` for `&[T]`)",
                    );
                }
            }
        }
    }
    if sig.inputs.len() > MAX_ARGS {
        let extra: Vec<&FnArg> = sig.inputs.iter().skip(MAX_ARGS).collect();
        fail(
            &quote!(#(#extra),*),
            "#[stampede::function] takes at most 8 arguments: group them in a struct or a tuple",
        );
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let syn::Type::ImplTrait(imp) = &**ty {
            fail(
                imp,
                "#[stampede::function] cannot return `impl Trait`: name a concrete type that is \
                 `Serialize + DeserializeOwned`",
            );
        }
        if let syn::Type::Reference(r) = &**ty {
            fail(
                r,
                "#[stampede::function] cannot return a reference: the value travels back to the \
                 parent process; return an owned type",
            );
        }
    }
    match errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    }) {
        Some(all) => Err(all),
        None => Ok(()),
    }
}
