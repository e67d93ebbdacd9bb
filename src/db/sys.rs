//! The few operating-system calls the embedded cluster needs that std does not offer: user
//! lookup, signals, and tying a child's life to ours. All `unsafe` in Solobase lives here.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// An account's numeric identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserIds {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The effective uid of this process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Looks a system user up by name (re-entrant `getpwnam_r`).
pub(crate) fn lookup_user(name: &str) -> Option<UserIds> {
    let c_name = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; all-zero is a valid (empty) value.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call and buf's length is passed.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(UserIds {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

/// Whether a process with this pid exists (it may belong to another user).
pub(crate) fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Signals PostgreSQL understands as shutdown requests.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shutdown {
    /// SIGINT: "fast" shutdown — abort sessions, checkpoint, exit cleanly.
    Fast,
    /// SIGQUIT: "immediate" shutdown — exit at once, recover on next start.
    Immediate,
}

/// Asks the process `pid` to shut down.
pub(crate) fn signal(pid: i32, how: Shutdown) -> std::io::Result<()> {
    let sig = match how {
        Shutdown::Fast => libc::SIGINT,
        Shutdown::Immediate => libc::SIGQUIT,
    };
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes the kernel send SIGINT (fast shutdown) to the child when the thread that spawned it
/// dies — including when this whole process is killed with SIGKILL — so a killed Solobase
/// never leaves an orphaned PostgreSQL behind.
pub(crate) fn shut_down_with_parent(cmd: &mut Command) {
    // SAFETY: the closure only calls async-signal-safe functions (prctl, getppid).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may already be gone between fork and prctl.
            if libc::getppid() == 1 {
                return Err(std::io::Error::other("parent exited during start"));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_user_exists() {
        assert_eq!(lookup_user("root").map(|u| u.uid), Some(0));
        assert_eq!(lookup_user("no-such-user-solobase"), None);
    }

    #[test]
    fn own_process_exists() {
        assert!(process_exists(std::process::id() as i32));
        assert!(!process_exists(0));
    }
}
