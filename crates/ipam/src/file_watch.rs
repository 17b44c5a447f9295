//! Block changes of a [`crate::file_store::FileStore`] as they happen:
//! inotify(7) on its `ipamblocks` directory. Every write renames a file into
//! place (`IN_MOVED_TO`) and a delete removes one (`IN_DELETE`), so the
//! owner task learns another node's new block at once instead of at its next
//! resync, and the import policy accepts the block's route without waiting
//! for it (block propagation is then BGP's latency, not the resync
//! interval's).

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::path::Path;
use tokio::sync::mpsc;
use tracing::warn;

/// Sent instead of a name when events were lost (the kernel's queue
/// overflowed): re-read everything.
pub const OVERFLOW: &str = "";

/// The names of the blocks written or deleted in `dir`, from a thread that
/// ends at the first event after the receiver is dropped.
pub fn watch_blocks(dir: &Path) -> Result<mpsc::UnboundedReceiver<String>, Errno> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(
        dir,
        AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_DELETE_SELF,
    )?;
    let (tx, rx) = mpsc::unbounded_channel();
    let dir = dir.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("ipam-watch".into())
        .spawn(move || {
            loop {
                let events = match inotify.read_events() {
                    Ok(events) => events,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        warn!(dir = %dir.display(), error = %e, "IPAM: watching the block files failed; the periodic resync goes on");
                        return;
                    }
                };
                for e in events {
                    if e.mask.contains(AddWatchFlags::IN_DELETE_SELF) {
                        return;
                    }
                    let name = if e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                        Some(OVERFLOW.to_string())
                    } else {
                        e.name
                            .as_ref()
                            .and_then(|n| n.to_str())
                            .filter(|n| !n.starts_with('.'))
                            .and_then(|n| n.strip_suffix(".yaml"))
                            .map(str::to_string)
                    };
                    if let Some(name) = name
                        && tx.send(name).is_err()
                    {
                        return;
                    }
                }
            }
        });
    if spawned.is_err() {
        return Err(Errno::EAGAIN);
    }
    Ok(rx)
}
