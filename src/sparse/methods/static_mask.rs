//! Static sparse training: the default random ERK/ER/uniform mask, never changed (a Sup-tickets
//! cycle start regrows by the default |dense gradient|).

use super::rule::Rule;

/// A random mask that never changes.
pub(crate) struct Static;

impl Rule for Static {}
