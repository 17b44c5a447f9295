//! A kube-runtime watcher that starts its list again when the list stalls.
//!
//! kube-runtime's watcher has a server-side timeout on its watch requests,
//! but none on the LIST that starts every (re)sync. A LIST that never gets
//! an answer (seen in CI: the request never reached a freshly started API
//! server, and the client waited on it with no deadline) leaves the watch
//! stuck before its first `InitDone`: the IPAM store then lists from the API
//! server forever and the configuration never arrives. [`GuardedWatch`]
//! gives every step of a (re)list [`LIST_STALL`] to produce an event; past
//! that it drops the request and starts the watch again (which begins with
//! `Init`, so consumers restart their relist). Once listed, the watch is
//! left alone: it produces events only when objects change, and the server
//! ends it on its own timeout.
//!
//! Related RFCs: none (Kubernetes API semantics).

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::Api;
use kube::runtime::watcher;
use std::fmt::Debug;
use std::time::Duration;

/// How long one step of a (re)list (a page of the LIST, or the objects of
/// one page) may take before the list starts again.
pub(crate) const LIST_STALL: Duration = Duration::from_secs(30);

/// One item of a watch.
pub(crate) type Item<K> = Result<watcher::Event<K>, watcher::Error>;

/// A watcher whose (re)lists are restarted when they stall (module docs).
pub(crate) struct GuardedWatch<K: 'static> {
    api: Api<K>,
    config: watcher::Config,
    stall: Duration,
    stream: BoxStream<'static, Item<K>>,
    /// Between `Init` and `InitDone`, or before the first event.
    listing: bool,
    /// What the log calls this watch.
    what: String,
}

impl<K> GuardedWatch<K>
where
    K: kube::Resource + Clone + Debug + serde::de::DeserializeOwned + Send + 'static,
{
    pub(crate) fn new(api: Api<K>, config: watcher::Config, what: String) -> GuardedWatch<K> {
        Self::with_stall(api, config, what, LIST_STALL)
    }

    pub(crate) fn with_stall(
        api: Api<K>,
        config: watcher::Config,
        what: String,
        stall: Duration,
    ) -> GuardedWatch<K> {
        let stream = watcher(api.clone(), config.clone()).boxed();
        GuardedWatch {
            api,
            config,
            stall,
            stream,
            listing: true,
            what,
        }
    }

    /// The next event or error; `None` when the watcher ends.
    pub(crate) async fn next(&mut self) -> Option<Item<K>> {
        loop {
            if !self.listing {
                let item = self.stream.next().await;
                return self.seen(item);
            }
            match tokio::time::timeout(self.stall, self.stream.next()).await {
                Ok(item) => return self.seen(item),
                Err(_) => {
                    tracing::warn!(
                        watch = %self.what,
                        stall_s = self.stall.as_secs_f64(),
                        "the list of a watch got no answer in time; starting it again"
                    );
                    self.stream = watcher(self.api.clone(), self.config.clone()).boxed();
                }
            }
        }
    }

    fn seen(&mut self, item: Option<Item<K>>) -> Option<Item<K>> {
        match &item {
            Some(Ok(watcher::Event::Init)) => self.listing = true,
            Some(Ok(watcher::Event::InitDone)) => self.listing = false,
            _ => {}
        }
        item
    }
}

#[cfg(test)]
#[path = "stall_tests.rs"]
mod tests;
