//! Registered functions, found by name in the child.
//!
//! `#[stampede::function]` submits a [`Registration`] to an `inventory`
//! collection. Its key is the function's path as `std::any::type_name`
//! reports it for the fn item, which is the same string in the parent (from
//! the value passed to `call_concurrently`) and in the child (from the
//! registration), because both are the same binary.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol;

/// The function, its arguments decoded, ready to run; returns the encoded
/// result. Used by generated code, not public API.
#[doc(hidden)]
pub type Prepared = Box<dyn FnOnce() -> Result<Vec<u8>, String>>;

/// One registered function. Used by generated code, not public API.
#[doc(hidden)]
pub struct Registration {
    name: fn() -> &'static str,
    prepare: fn(&[u8]) -> Result<Prepared, String>,
}

impl Registration {
    pub const fn new(
        name: fn() -> &'static str,
        prepare: fn(&[u8]) -> Result<Prepared, String>,
    ) -> Self {
        Self { name, prepare }
    }
}

inventory::collect!(Registration);

/// The registration for `name`, if exactly one exists.
pub(crate) fn find(name: &str) -> Option<&'static Registration> {
    inventory::iter::<Registration>().find(|r| (r.name)() == name)
}

pub(crate) fn is_registered(name: &str) -> bool {
    find(name).is_some()
}

impl Registration {
    pub(crate) fn prepare(&self, args: &[u8]) -> Result<Prepared, String> {
        (self.prepare)(args)
    }
}

/// The registry key of a function value. Used by generated code, not public API.
#[doc(hidden)]
pub fn name_of<F>(_: &F) -> &'static str {
    std::any::type_name::<F>()
}

/// Decodes the arguments of `f` and returns the call, ready to run after the
/// barrier. Used by generated code, not public API.
#[doc(hidden)]
pub fn prepare<F, M>(f: F, input: &[u8]) -> Result<Prepared, String>
where
    F: Function<M> + 'static,
    F::Args: 'static,
{
    let args: F::Args = protocol::decode(input).map_err(|e| {
        format!(
            "could not decode the arguments as `{}`: {e}",
            std::any::type_name::<F::Args>()
        )
    })?;
    Ok(Box::new(move || {
        protocol::encode(&f.call(args))
            .map_err(|e| format!("could not encode the returned value: {e}"))
    }))
}

/// A function stampede can call with encoded arguments: implemented for
/// every `Fn` of up to 8 arguments whose arguments and result are
/// `Serialize + DeserializeOwned`.
///
/// `Args` is what `call_concurrently` takes: `()` for no argument, the value
/// itself for one, a tuple for several. `Marker` only lets the compiler pick
/// the arity; you never name it.
///
/// ```no_run
/// #[stampede::function]
/// fn add(a: u32, b: u32) -> u32 {
///     a + b
/// }
///
/// /// Runs any registered function in 4 children.
/// fn four_times<F: stampede::Function<M>, M>(f: F, args: F::Args) -> Vec<F::Output> {
///     stampede::call_concurrently(4, f, args).unwrap().unwrap_all()
/// }
///
/// let sums: Vec<u32> = four_times(add, (1, 2));
/// ```
pub trait Function<Marker> {
    /// The arguments, as passed to `call_concurrently`.
    type Args: Serialize + DeserializeOwned;
    /// The returned value.
    type Output: Serialize + DeserializeOwned;
    /// Calls the function.
    fn call(&self, args: Self::Args) -> Self::Output;
}

impl<F, R> Function<fn() -> R> for F
where
    F: Fn() -> R,
    R: Serialize + DeserializeOwned,
{
    type Args = ();
    type Output = R;
    fn call(&self, (): ()) -> R {
        self()
    }
}

impl<F, A, R> Function<fn(A) -> R> for F
where
    F: Fn(A) -> R,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    type Args = A;
    type Output = R;
    fn call(&self, a: A) -> R {
        self(a)
    }
}

macro_rules! impl_function {
    ($($arg:ident),+) => {
        impl<F, R, $($arg),+> Function<fn($($arg),+) -> R> for F
        where
            F: Fn($($arg),+) -> R,
            R: Serialize + DeserializeOwned,
            $($arg: Serialize + DeserializeOwned),+
        {
            type Args = ($($arg,)+);
            type Output = R;
            #[expect(non_snake_case, reason = "type names double as binding names")]
            fn call(&self, ($($arg,)+): Self::Args) -> R {
                self($($arg),+)
            }
        }
    };
}

impl_function!(A, B);
impl_function!(A, B, C);
impl_function!(A, B, C, D);
impl_function!(A, B, C, D, E);
impl_function!(A, B, C, D, E, G);
impl_function!(A, B, C, D, E, G, H);
impl_function!(A, B, C, D, E, G, H, I);
