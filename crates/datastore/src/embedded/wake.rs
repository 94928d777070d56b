//! Waking the watch poller when another process commits: an inotify watch
//! on the store's write-ahead log (`<file>-wal`), which every commit
//! appends to. The poller then checks at once instead of at its next tick,
//! so a write made by another process (the CNI plugin, the CLI) reaches
//! watchers in well under a millisecond rather than half a poll interval
//! on average.
//!
//! A write to the WAL precedes the commit's visibility (the WAL index in
//! shared memory changes last, and memory writes wake no one), so the
//! poller, once woken, looks again every millisecond until the commit
//! shows (`feed`).
//!
//! The timed poll stays as the fallback, and is the whole mechanism where
//! inotify is unavailable (a filesystem without it, a WAL file not there
//! yet, the per-user watch limit reached): a missed or failed wake-up only
//! costs latency, never a missed commit, because the poller's check
//! compares SQLite's `data_version` whatever woke it.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

/// Sleeps until the next commit to the store's WAL or a timeout.
pub(super) struct CommitWake {
    /// `None`: inotify could not be set up; waits are plain sleeps.
    inotify: Option<Inotify>,
}

impl CommitWake {
    /// Watches the WAL of the store at `db` (it exists once a connection
    /// has read the store).
    pub fn new(db: &Path) -> CommitWake {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|i| {
            i.add_watch(Path::new(&wal), AddWatchFlags::IN_MODIFY)
                .map(|_| i)
        });
        match inotify {
            Ok(i) => CommitWake { inotify: Some(i) },
            Err(err) => {
                tracing::debug!(path = %db.display(), error = %err, "no inotify on the WAL; polling only");
                CommitWake { inotify: None }
            }
        }
    }

    /// Whether commits wake the poller (else it only polls).
    pub fn active(&self) -> bool {
        self.inotify.is_some()
    }

    /// Returns after a write to the WAL (true) or after `timeout` (false),
    /// whichever comes first.
    pub fn wait(&self, timeout: Duration) -> bool {
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(timeout);
            return false;
        };
        let millis = u16::try_from(timeout.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(millis)) {
            // Drain what arrived: the checks that follow cover it all.
            Ok(n) if n > 0 => {
                while matches!(inotify.read_events(), Ok(events) if !events.is_empty()) {}
                true
            }
            Ok(_) => false,
            Err(_) => {
                std::thread::sleep(timeout);
                false
            }
        }
    }
}
