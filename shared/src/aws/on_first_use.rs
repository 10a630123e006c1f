//! SDK clients that a function may never call are built when first called. Building a client
//! loads its service's endpoint rules (a JSON document per SDK crate), which is most of what a
//! function's init spends beyond the runtime; a function that never sends an SMS shouldn't pay
//! for SNS. The table's client, used by every invocation, is built up front in `main`.

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_config::SdkConfig;

type Build<C> = Box<dyn Fn() -> C + Send + Sync>;

/// A client built on first use from the process's configuration, or handed over ready.
pub struct OnFirstUse<C>(Arc<Slot<C>>);

struct Slot<C> {
    client: OnceLock<C>,
    build: Option<Build<C>>,
}

impl<C: 'static> OnFirstUse<C> {
    /// `build` runs once, on the first [`get`](Self::get).
    pub fn new(config: &SdkConfig, build: fn(&SdkConfig) -> C) -> Self {
        let config = config.clone();
        Self(Arc::new(Slot {
            client: OnceLock::new(),
            build: Some(Box::new(move || build(&config))),
        }))
    }
}

impl<C> OnFirstUse<C> {
    pub fn get(&self) -> &C {
        self.0.client.get_or_init(|| {
            let build = self.0.build.as_ref();
            build.expect("a client without a builder was handed over ready")()
        })
    }
}

impl<C> From<C> for OnFirstUse<C> {
    fn from(client: C) -> Self {
        Self(Arc::new(Slot {
            client: OnceLock::from(client),
            build: None,
        }))
    }
}

impl<C> Clone for OnFirstUse<C> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<C> fmt::Debug for OnFirstUse<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.0.client.get().is_some() {
            "built"
        } else {
            "not yet used"
        };
        write!(f, "OnFirstUse({state})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static BUILT: AtomicUsize = AtomicUsize::new(0);

    fn count(_: &SdkConfig) -> usize {
        BUILT.fetch_add(1, Ordering::SeqCst) + 1
    }

    #[test]
    fn built_once_on_first_use_and_shared_by_clones() {
        let config = SdkConfig::builder().build();
        let lazy = OnFirstUse::new(&config, count);
        let copy = lazy.clone();
        assert_eq!(BUILT.load(Ordering::SeqCst), 0, "nothing built before use");
        assert_eq!(*copy.get(), 1);
        assert_eq!(*lazy.get(), 1);
        assert_eq!(BUILT.load(Ordering::SeqCst), 1);
        assert_eq!(OnFirstUse::from(7).get(), &7);
    }
}
