//! The check `#[stampede::function]` emits for each argument type and the
//! return type, so that a type that cannot travel between processes is named
//! and underlined in the compile error, with what to do about it. Used by
//! generated code, not public API.
//!
//! A plain bound `T: Serialize + DeserializeOwned` would report serde's
//! traits on whichever inner type lacks them, once per trait, and
//! `prepare`'s `Function<_>` bound names neither. Instead, method resolution
//! picks a verdict (autoref specialisation: [`ViaSerde::verdict`], a `&self`
//! method of `Probe<T>`, is found before [`Fallback::verdict`], one of
//! `&Probe<T>`, and applies only when `T` is serde-ready), and one bound with
//! stampede's message, [`Serde`], fails on the bad verdict. Generated code
//! writes the type as the turbofish argument of [`assert_serde`], so the
//! error underlines the type as the user wrote it. The same choice routes
//! [`prepare`](crate::registry::prepare): a function whose types cannot
//! travel gets no second error about `Function<_>`.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::registry::{Function, Prepared};

/// The type under check; which `verdict` method applies to it is the answer.
pub struct Probe<T>(PhantomData<T>);

impl<T> Probe<T> {
    /// A probe for `T`.
    #[expect(
        clippy::new_without_default,
        reason = "only generated code makes one, by this name"
    )]
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

/// Verdict: `T` is `Serialize + DeserializeOwned`.
pub struct Travels<T>(PhantomData<T>);

/// Verdict: `T` is not `Serialize + DeserializeOwned`.
pub struct CannotTravel<T>(PhantomData<T>);

/// Found first, and applies when `T` is serde-ready.
pub trait ViaSerde<T> {
    /// `Travels`.
    fn verdict(&self) -> Travels<T>;
}

impl<T: Serialize + DeserializeOwned> ViaSerde<T> for Probe<T> {
    fn verdict(&self) -> Travels<T> {
        Travels(PhantomData)
    }
}

/// Found next, for every `T`.
pub trait Fallback<T> {
    /// `CannotTravel`.
    fn verdict(&self) -> CannotTravel<T>;
}

impl<T> Fallback<T> for &Probe<T> {
    fn verdict(&self) -> CannotTravel<T> {
        CannotTravel(PhantomData)
    }
}

/// Holds for the verdict `Travels`: the one bound that fails, with
/// stampede's message, when `Self` cannot travel.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot travel between processes: stampede needs \
               `Serialize + DeserializeOwned` for arguments and return values",
    label = "not `Serialize + DeserializeOwned`",
    note = "derive `serde::Serialize` and `serde::Deserialize` on your own types \
            (serde's `derive` feature), or use a type that has them",
    note = "for an error type that has neither, such as `std::io::Error`, return \
            `Result<T, String>` and map the error: `.map_err(|e| e.to_string())`"
)]
pub trait Serde<Verdict> {}

impl<T> Serde<Travels<T>> for T {}

/// A second verdict no probe gives: with two impls of [`Serde`], the compiler
/// cannot infer `Travels` from the bound alone before it sees the verdict.
pub enum Undecided {}

impl<T> Serde<Undecided> for T {}

/// Compiles only if the verdict on `T` is `Travels`.
pub fn assert_serde<T: Serde<V>, V>(_: V) {}

/// The registered function, for [`ViaFunction::prepare`] or
/// [`FallbackPrepare::prepare`].
pub struct PrepareProbe<F>(pub F);

/// Found first, and applies when `F` is a [`Function`].
pub trait ViaFunction<M> {
    /// `registry::prepare`.
    fn prepare(self, input: &[u8]) -> Result<Prepared, String>;
}

impl<F, M> ViaFunction<M> for PrepareProbe<F>
where
    F: Function<M> + 'static,
    F::Args: 'static,
{
    fn prepare(self, input: &[u8]) -> Result<Prepared, String> {
        crate::registry::prepare(self.0, input)
    }
}

/// Found next, for a function whose types cannot travel, which
/// [`assert_serde`] has already rejected with its own error.
pub trait FallbackPrepare {
    /// An error; never called in a program that compiles.
    fn prepare(self, input: &[u8]) -> Result<Prepared, String>;
}

impl<F> FallbackPrepare for &PrepareProbe<F> {
    fn prepare(self, _: &[u8]) -> Result<Prepared, String> {
        Err(String::from(
            "the function's types cannot travel between processes",
        ))
    }
}
