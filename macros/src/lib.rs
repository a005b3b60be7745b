//! Attribute macros of [stampede-test](https://docs.rs/stampede-test). Use
//! them through that crate, whose library is named `stampede`
//! (`#[stampede::function]`, `#[stampede::flaky]`); this crate is an
//! implementation detail and its version is pinned to the library's.
//!
//! Generated code names only items under `::stampede::__private`, so user
//! crates need no direct dependency on inventory, serde or the codec.

use proc_macro::TokenStream;

mod flaky;
mod function;

/// Registers a plain function so that stampede can call it in child
/// processes. See the `stampede` crate documentation.
#[proc_macro_attribute]
pub fn function(args: TokenStream, item: TokenStream) -> TokenStream {
    function::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Reruns a flaky test until it has passed `min_passes` times, and fails it
/// as soon as that is out of reach within `max_runs` attempts.
///
/// Goes above `#[test]` on a test that returns `()` or `Result<(), E>` with
/// `E: Debug`; a panic or an `Err` is a failed attempt. Both keys are
/// optional: `max_runs` defaults to 2 and `min_passes` to 1 (one retry).
/// Each failed attempt is printed to stderr; when the test finally fails, its
/// panic message lists every failed attempt. See the `stampede` crate
/// documentation.
///
/// ```ignore
/// #[stampede::flaky(max_runs = 5, min_passes = 2)]
/// #[test]
/// fn server_answers_within_a_second() {
///     // ...
/// }
/// ```
#[proc_macro_attribute]
pub fn flaky(args: TokenStream, item: TokenStream) -> TokenStream {
    flaky::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
