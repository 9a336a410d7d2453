//! Waiting until another thread sleeps on a lock, instead of sleeping a while and hoping it got
//! there (a test that slept too little passed without the interleaving it is about).
//!
//! On Linux, `/proc/self/task/TID/wchan` names the kernel function a sleeping thread waits in:
//! a futex wait is a lock, a condition variable or a channel. The thread under test names
//! itself (`this_thread`) just before the call that should block; the first futex wait after
//! that is taken as that call's. Where `/proc` or `wchan` cannot be read, `until_blocked`
//! sleeps for the fallback, as the tests did before.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// The calling thread's id as `/proc` names it, or `None` without `/proc`.
pub fn this_thread() -> Option<String> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str().map(str::to_string)
}

/// Where thread `tid` of this process sleeps, if it does and `/proc` says so.
fn sleeps_in(tid: &str) -> Option<String> {
    let state = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The state follows the command name's closing parenthesis.
    let sleeping = state.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
    let wchan = std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).ok()?;
    sleeping.then_some(wchan)
}

/// Returns once thread `tid` sleeps in a futex wait (true), or after `fallback` when that cannot
/// be seen (false). Panics if the thread has not blocked after 60 s: the call did not wait.
pub fn until_blocked(tid: Option<&str>, fallback: Duration) -> bool {
    let readable = tid.is_some_and(|t| std::fs::read_to_string(format!("/proc/self/task/{t}/wchan")).is_ok());
    let Some(tid) = tid.filter(|_| readable) else {
        std::thread::sleep(fallback);
        return false;
    };
    let start = Instant::now();
    let mut hidden = true;
    loop {
        match sleeps_in(tid) {
            Some(w) if w.contains("futex") => return true,
            Some(w) if w != "0" && !w.is_empty() => hidden = false,
            _ => {}
        }
        // A kernel that hides wait channels shows "0" for every sleep: fall back.
        if hidden && start.elapsed() > fallback {
            return false;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "thread {tid} never blocked on a lock");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether thread `tid` sleeps in a futex wait now (false when `/proc` does not say).
pub fn blocked_now(tid: &str) -> bool {
    sleeps_in(tid).is_some_and(|w| w.contains("futex"))
}
