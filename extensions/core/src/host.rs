//! What only the host uses: the object-safe extension, its configuration updater, the route
//! table and its lookups, and the in-process event bus. Hidden from the documentation:
//! extension code has no use for these, and they may change in any release.

pub use crate::event::EventBus;
pub use crate::extension::{ConfigUpdater, Erased, ErasedExtension, Initialized, RawInit};
pub use crate::hooks::HookSet;
pub use crate::routes::{Lookup, RouteDef, RouteTable};
