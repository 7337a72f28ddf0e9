//! The shared library that playbook blocks link against (written by `sinew present` as
//! `sinew-present/sdk/src/lib.rs`; not a module of the SDK).
//!
//! It re-exports the SDK. It also compiles, once, the generic code that nearly every block
//! instantiates: `?` turning the SDK's errors into `anyhow::Error` (anyhow's vtable, drop
//! and backtrace code for each error type) and `Run::say` with text. This crate is built
//! at an optimisation level that shares generics, so a block finds these instances here
//! instead of compiling them again: that is most of a hello block's compile.

pub use sinew::*;

/// `?` from `Result<_, E>` in a function returning `anyhow::Result`.
fn question_mark<E>(result: Result<(), E>) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    result?;
    Ok(())
}

/// The shared instances; the addresses only make this crate compile (and export) them.
/// Never inlined: an inlinable function would be compiled where it is called, and so its
/// instances with it.
#[doc(hidden)]
#[inline(never)]
pub fn shared_instances() -> [*const (); 6] {
    let say_text: fn(&Run, &'static str) = Run::say;
    let say_string: fn(&Run, String) = Run::say;
    [
        question_mark::<RunError> as *const (),
        question_mark::<RunFailed> as *const (),
        question_mark::<TaskFailed> as *const (),
        question_mark::<HostError> as *const (),
        say_text as *const (),
        say_string as *const (),
    ]
}
