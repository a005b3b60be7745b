//! Attribute macros of [stampede](https://docs.rs/stampede). Use them through
//! the `stampede` crate (`#[stampede::function]`); this crate is an
//! implementation detail and its version is pinned to the library's.
//!
//! Generated code names only items under `::stampede::__private`, so user
//! crates need no direct dependency on inventory, serde or the codec.

use proc_macro::TokenStream;

mod function;

/// Registers a plain function so that stampede can call it in child
/// processes. See the `stampede` crate documentation.
#[proc_macro_attribute]
pub fn function(args: TokenStream, item: TokenStream) -> TokenStream {
    function::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
