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

/// Registers a function so that stampede can call it in child processes.
///
/// The function stays as written, callable as before; the attribute adds a
/// registration that a child finds by the function's path (its
/// `std::any::type_name`, e.g. `my_tests::claim`), in the same binary.
/// Pass the function itself to `call_concurrently`, `Options`, `Batch` or
/// `Load`, never a closure: a closure has no name to find it by.
///
/// # Rules
///
/// - A free `fn` at module level: not a method or an associated function
///   in an `impl` block, not a closure. Any visibility; two functions of
///   the same name in different modules are different registrations.
/// - 0 to 8 arguments, taken by value (no references, no `impl Trait`);
///   group more in a struct or a tuple. Patterns such as `(a, b): (u32, u32)`
///   are fine.
/// - Every argument type and the return type are `Serialize +
///   DeserializeOwned`: they travel between processes. A type that is not
///   is named and underlined in the compile error. Return `()` for nothing.
/// - Not generic, no `where` clause (a child needs one name to find), not
///   `const`, `unsafe`, `extern` or variadic.
/// - `async fn` only with stampede-test's `tokio` feature: the function
///   then becomes a plain `fn` of the same name and signature that runs its
///   body on a tokio current-thread runtime built for the call, so call it
///   from synchronous code (inside another runtime it panics). Without the
///   feature an `async fn` is a compile error that says to enable it.
/// - The attribute takes no arguments.
///
/// Each misuse is a compile error on the offending token that says what to
/// write instead; several are reported at once.
///
/// # Where the child enters
///
/// A registered function runs in a fresh copy of the binary, entered
/// through `stampede::entry!()` (test crates) or `stampede::init()`, the
/// first line of `main` (binaries; code before it would run again in every
/// child). Statics start fresh in each child; only the arguments travel.
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
